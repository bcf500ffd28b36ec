// MountTinyDisk: unshare(CLONE_NEWNS) (or a user namespace where that is refused), then a
// size-limited tmpfs. Not a disk emulator: the kernel's tmpfs does the accounting.
#include "runtime/io/tiny_disk_for_test.h"

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {
namespace {

bool WriteProcFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  return static_cast<bool>(out << text);
}

absl::Status EnterPrivateMountNamespace() {
  if (::unshare(CLONE_NEWNS) != 0) {
    const uid_t uid = ::getuid();
    const gid_t gid = ::getgid();
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
      return absl::UnavailableError(absl::StrCat("unshare: ", std::strerror(errno)));
    }
    WriteProcFile("/proc/self/setgroups", "deny");
    if (!WriteProcFile("/proc/self/uid_map", absl::StrCat(uid, " ", uid, " 1")) ||
        !WriteProcFile("/proc/self/gid_map", absl::StrCat(gid, " ", gid, " 1"))) {
      return absl::UnavailableError("cannot map ids in a user namespace");
    }
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return absl::UnavailableError(absl::StrCat("making / private: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> MountTinyDisk(const std::string& parent, int64_t bytes) {
  if (absl::Status s = EnterPrivateMountNamespace(); !s.ok()) return s;
  const std::string dir = parent + "/tiny_disk";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  const std::string options = absl::StrCat("size=", bytes, ",mode=0777");
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("mount tmpfs on ", dir, ": ", std::strerror(errno)));
  }
  return dir;
}

}  // namespace stagehand::runtime
