#include "runtime/io/output_path.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {

absl::Status CheckOutputFile(const std::string& flag, const std::string& path) {
  if (path.empty()) return absl::OkStatus();
  namespace fs = std::filesystem;
  std::error_code error;
  if (fs::is_directory(path, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, " is a directory; give a file name"));
  }
  fs::path directory = fs::path(path).parent_path();
  if (directory.empty()) directory = ".";
  if (!fs::is_directory(directory, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": directory ", directory.string(), " does not exist"));
  }
  if (::access(directory.c_str(), W_OK | X_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": directory ", directory.string(), " is not writable"));
  }
  if (fs::exists(path, error) && ::access(path.c_str(), W_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, " exists and is not writable"));
  }
  return absl::OkStatus();
}

}  // namespace stagehand::runtime
