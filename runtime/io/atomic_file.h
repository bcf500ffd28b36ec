// One atomic file write for every writer in the tree: a temporary beside the target, the bytes,
// fsync of the file, rename over the target, fsync of the folder; on failure nothing is left.
// Not a file format and not a folder writer: checkpoint folders rename themselves into place.
#ifndef STAGEHAND_RUNTIME_IO_ATOMIC_FILE_H_
#define STAGEHAND_RUNTIME_IO_ATOMIC_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace stagehand::runtime {

// Writes the concatenation of `pieces` to `path` so that a reader sees the old file or the
// whole new one, and the new one survives a crash once this returns OK. On failure the
// temporary is removed, `path` is untouched, and the status says what happened:
// ResourceExhausted for a full disk (with the bytes the file needs and the bytes free),
// PermissionDenied when the folder cannot be written, Internal otherwise.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::Span<const absl::string_view> pieces);
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// fsync(2) of a file or a folder by path (a folder's fsync makes renames inside it durable).
absl::Status FsyncPath(const std::string& path);

// Free bytes for an unprivileged writer on the filesystem holding `path`, or -1 if unknown.
int64_t FreeBytesAt(const std::string& path);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_IO_ATOMIC_FILE_H_
