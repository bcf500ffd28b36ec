// Paths a user types, resolved against the directory the user ran the command in: under
// `bazel run` the process starts in the runfiles tree and BUILD_WORKING_DIRECTORY names the
// user's directory. One rule for every tool and flag. Not a path normaliser.
#ifndef STAGEHAND_RUNTIME_IO_USER_PATH_H_
#define STAGEHAND_RUNTIME_IO_USER_PATH_H_

#include <string>

namespace stagehand::runtime {

// `path` unchanged when it is empty or absolute, or when `working_dir` is null or empty;
// else working_dir/path.
std::string ResolveUserPath(const std::string& path, const char* working_dir);

// The same against $BUILD_WORKING_DIRECTORY (unset outside `bazel run`: unchanged).
std::string ResolveUserPath(const std::string& path);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_IO_USER_PATH_H_
