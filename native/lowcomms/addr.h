// Node addresses: parsing, comparison by IP only (the kernel forces the port to 0
// before comparing), printing.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>
#include <cstdint>
#include <string>

namespace lowcomms {

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const { return ss.ss_family; }
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&ss); }
};

// An IPv4 or IPv6 literal with the given port; false if not a literal.
bool parse_addr(const std::string& text, uint16_t port, SockAddr* out);
// Same family and IP; an IPv4-mapped IPv6 address equals its IPv4 form.
bool same_ip(const sockaddr* a, const sockaddr* b);
std::string addr_to_string(const sockaddr* sa);
SockAddr with_port(const SockAddr& a, uint16_t port);

}  // namespace lowcomms
