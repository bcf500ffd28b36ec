// Checks, before a run starts, that the files it will write at the end can be written, so a
// long run never ends with "cannot write" and its result lost. Not a writer: nothing is created.
#ifndef STAGEHAND_RUNTIME_IO_OUTPUT_PATH_H_
#define STAGEHAND_RUNTIME_IO_OUTPUT_PATH_H_

#include <string>

#include "absl/status/status.h"

namespace stagehand::runtime {

// OK when `path` is empty (no output asked for) or names a file that can be created or
// replaced: its directory exists and is writable, and `path` is not a directory. Otherwise
// InvalidArgument naming `flag` (e.g. "--save_params") and the reason.
absl::Status CheckOutputFile(const std::string& flag, const std::string& path);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_IO_OUTPUT_PATH_H_
