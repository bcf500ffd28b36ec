// NetDeviceToward: the network interface this host uses to reach a given host, so that the
// data plane (UCX) listens only where the cluster's traffic flows. Asks the kernel's routing
// table (a connected UDP socket sends nothing); not a network scanner and not a UCX wrapper.
#ifndef STAGEHAND_RUNTIME_TRANSPORT_NET_DEVICE_H_
#define STAGEHAND_RUNTIME_TRANSPORT_NET_DEVICE_H_

#include <string>

#include "absl/status/statusor.h"

namespace stagehand::runtime {

// The local address the kernel would send from to reach `host` (a name or an IPv4/IPv6
// address), e.g. "127.0.0.1" toward "localhost".
absl::StatusOr<std::string> SourceAddressToward(const std::string& host);

// The name of the interface that holds `address` (e.g. "lo" for 127.0.0.1), as UCX_NET_DEVICES
// names it. NotFound when no interface holds it.
absl::StatusOr<std::string> InterfaceOfAddress(const std::string& address);

// Both: the interface toward `host`.
absl::StatusOr<std::string> NetDeviceToward(const std::string& host);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRANSPORT_NET_DEVICE_H_
