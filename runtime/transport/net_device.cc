// NetDeviceToward: the routing table's answer via a connected UDP socket, then getifaddrs.
#include "runtime/transport/net_device.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

std::string NumericHost(const sockaddr* addr, socklen_t len) {
  char host[NI_MAXHOST] = {0};
  if (getnameinfo(addr, len, host, sizeof(host), nullptr, 0, NI_NUMERICHOST) != 0) return "";
  return host;
}

}  // namespace

absl::StatusOr<std::string> SourceAddressToward(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (int e = getaddrinfo(host.c_str(), "9", &hints, &found); e != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(e)));
  }
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      close(fd);
      freeaddrinfo(found);
      return NumericHost(reinterpret_cast<sockaddr*>(&local), len);
    }
    why = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  return absl::UnavailableError(absl::StrCat("no route to ", host, ": ", why));
}

absl::StatusOr<std::string> InterfaceOfAddress(const std::string& address) {
  ifaddrs* all = nullptr;
  if (getifaddrs(&all) != 0)
    return absl::UnavailableError(absl::StrCat("getifaddrs: ", std::strerror(errno)));
  std::string name;
  for (ifaddrs* i = all; i != nullptr && name.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    const int family = i->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    const socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    std::string here = NumericHost(i->ifa_addr, len);
    if (here.find('%') != std::string::npos) here = here.substr(0, here.find('%'));  // fe80::1%eth0
    if (here == address) name = i->ifa_name;
  }
  freeifaddrs(all);
  if (name.empty())
    return absl::NotFoundError(absl::StrCat("no network interface holds ", address));
  return name;
}

absl::StatusOr<std::string> NetDeviceToward(const std::string& host) {
  ASSIGN_OR_RETURN(const std::string source, SourceAddressToward(host));
  return InterfaceOfAddress(source);
}

}  // namespace stagehand::runtime
