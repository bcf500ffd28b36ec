// Resolving user paths against BUILD_WORKING_DIRECTORY.
#include "runtime/io/user_path.h"

#include <cstdlib>

namespace stagehand::runtime {

std::string ResolveUserPath(const std::string& path, const char* working_dir) {
  if (path.empty() || path[0] == '/' || working_dir == nullptr || working_dir[0] == '\0')
    return path;
  std::string dir(working_dir);
  if (dir.back() != '/') dir.push_back('/');
  return dir + path;
}

std::string ResolveUserPath(const std::string& path) {
  return ResolveUserPath(path, std::getenv("BUILD_WORKING_DIRECTORY"));
}

}  // namespace stagehand::runtime
