// Test-only: a real, small filesystem (a tmpfs of a few KiB in this process's own mount
// namespace) so that tests see a genuine ENOSPC. Not for production code, not a fake disk.
#ifndef STAGEHAND_RUNTIME_IO_TINY_DISK_FOR_TEST_H_
#define STAGEHAND_RUNTIME_IO_TINY_DISK_FOR_TEST_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace stagehand::runtime {

// Mounts a tmpfs of `bytes` (rounded up to pages) under `parent` and returns its path. Moves
// the calling process into a private mount namespace first, so nothing outside it sees the
// mount; call it before starting threads. Unavailable when the process may not mount.
absl::StatusOr<std::string> MountTinyDisk(const std::string& parent, int64_t bytes);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_IO_TINY_DISK_FOR_TEST_H_
