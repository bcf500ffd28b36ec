// MappedFile: a regular file mapped read-only, so that a reader touches only the bytes it
// parses and a 20 GB file costs address space, not memory; and CheckFitsInMemory, which turns
// "this file would need more memory than there is" into an error that names the file and the
// sizes before anything is allocated. Not a cache and not writable.
#ifndef STAGEHAND_RUNTIME_IO_MAPPED_FILE_H_
#define STAGEHAND_RUNTIME_IO_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagehand::runtime {

class MappedFile {
 public:
  // NotFound for a missing file; InvalidArgument for a directory, device, pipe or other file
  // that is not a regular file (e.g. /dev/zero, which would otherwise be read forever).
  static absl::StatusOr<MappedFile> Open(const std::string& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  absl::string_view bytes() const { return absl::string_view(data_, size_); }

 private:
  MappedFile() = default;
  std::string path_;
  const char* data_ = nullptr;  // null for an empty file
  uint64_t size_ = 0;
};

// Memory the kernel says is available now (MemAvailable in /proc/meminfo; physical memory
// when that cannot be read), or less when a cgroup v2 limit (a container's, a Slurm job's)
// leaves less.
uint64_t AvailableMemoryBytes();

// OK when `bytes` fit `limit`; otherwise ResourceExhausted: "<what> needs <bytes> of memory
// but only <limit> is available".
absl::Status CheckFitsInMemory(const std::string& what, uint64_t bytes, uint64_t limit);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_IO_MAPPED_FILE_H_
