// The write-to-temporary, fsync, rename, fsync-folder sequence, with errno turned into a
// Status that names the file. Not buffered I/O: each piece goes straight to write(2).
#include "runtime/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {
namespace {

std::string FolderOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// The status for a failed write(2) or fsync(2) of `tmp` with errno `err`.
absl::Status WriteError(const std::string& path, int err, uint64_t needed, uint64_t written) {
  if (err == ENOSPC || err == EDQUOT) {
    const int64_t free_bytes = FreeBytesAt(FolderOf(path));
    return absl::ResourceExhaustedError(
        absl::StrCat("disk full writing ", path, ": the file needs ", needed, " bytes, ", written,
                     " were written before the disk filled",
                     free_bytes >= 0 ? absl::StrCat(", ", free_bytes, " bytes are free now") : "",
                     "; free space or write elsewhere"));
  }
  return absl::InternalError(absl::StrCat("writing ", path, " failed after ", written, " of ",
                                          needed, " bytes: ", std::strerror(err)));
}

// write(2) of every piece to `fd`, retrying short writes; sets *written.
int WriteAll(int fd, absl::Span<const absl::string_view> pieces, uint64_t* written) {
  for (absl::string_view piece : pieces) {
    const char* p = piece.data();
    size_t left = piece.size();
    while (left > 0) {
      const ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno;
      if (n == 0) return ENOSPC;  // a regular file that accepts nothing is full
      p += n;
      left -= static_cast<size_t>(n);
      *written += static_cast<uint64_t>(n);
    }
  }
  return 0;
}

}  // namespace

int64_t FreeBytesAt(const std::string& path) {
  struct statvfs s;
  if (::statvfs(path.c_str(), &s) != 0) return -1;
  return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
}

absl::Status FsyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  const int err = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  if (err != 0) {
    return absl::InternalError(absl::StrCat("fsync of ", path, " failed: ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::Span<const absl::string_view> pieces) {
  uint64_t needed = 0;
  for (absl::string_view piece : pieces) needed += piece.size();
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    const int err = errno;
    if (err == ENOSPC || err == EDQUOT) return WriteError(path, err, needed, 0);
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create a temporary beside ", path, ": ", std::strerror(err)));
  }
  uint64_t written = 0;
  int err = ::fchmod(fd, 0644) == 0 ? 0 : errno;  // mkstemp's 0600 would hide it from others
  if (err == 0) err = WriteAll(fd, pieces, &written);
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return WriteError(path, err, needed, written);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("cannot rename ", tmp, " to ", path, ": ", std::strerror(err)));
  }
  return FsyncPath(FolderOf(path));
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  return WriteFileAtomically(path, absl::MakeConstSpan(&contents, 1));
}

}  // namespace stagehand::runtime
