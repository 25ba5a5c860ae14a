// What an epoll_event's data.u64 names, in the two threads' epoll sets: one table, so
// that a key means the same in every file that registers or reads one.
//   receive thread: kWakeKey (its eventfd), kListenKey (the TCP listen socket, or the
//                   SCTP one-to-many socket readable), else a Socket::id (from
//                   kFirstSocketId on).
//   send thread:    kWakeKey (its eventfd), kSctpKey (the SCTP socket writable), else
//                   a nodeid (that node's outgoing TCP socket writable or connected).
#pragma once
#include <cstdint>

namespace lowcomms {

constexpr uint64_t kWakeKey = 0;
constexpr uint64_t kListenKey = 1;
constexpr uint64_t kSctpKey = ~uint64_t(0);
constexpr uint64_t kFirstSocketId = 16;  // socket ids stay clear of the keys above

}  // namespace lowcomms
