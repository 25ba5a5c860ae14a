#include "lowcomms/addr.h"

#include <arpa/inet.h>
#include <cstring>

namespace lowcomms {

bool parse_addr(const std::string& text, uint16_t port, SockAddr* out) {
  *out = SockAddr{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out->ss);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out->len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out->ss);
  if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out->len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

namespace {

// The 16-byte IPv6 form of any address, IPv4 mapped.
bool as_v6(const sockaddr* sa, in6_addr* out) {
  if (sa->sa_family == AF_INET6) {
    *out = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    return true;
  }
  if (sa->sa_family == AF_INET) {
    std::memset(out, 0, sizeof *out);
    out->s6_addr[10] = 0xff;
    out->s6_addr[11] = 0xff;
    std::memcpy(&out->s6_addr[12], &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
    return true;
  }
  return false;
}

}  // namespace

bool same_ip(const sockaddr* a, const sockaddr* b) {
  in6_addr x, y;
  return as_v6(a, &x) && as_v6(b, &y) && std::memcmp(&x, &y, sizeof x) == 0;
}

std::string addr_to_string(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  return buf;
}

SockAddr with_port(const SockAddr& a, uint16_t port) {
  SockAddr r = a;
  if (r.family() == AF_INET)
    reinterpret_cast<sockaddr_in*>(&r.ss)->sin_port = htons(port);
  else
    reinterpret_cast<sockaddr_in6*>(&r.ss)->sin6_port = htons(port);
  return r;
}

}  // namespace lowcomms
