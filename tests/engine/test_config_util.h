// Helpers shared by the config loader tests.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/config.h"

namespace rb::engine::testing {

// A directory under $TMPDIR that is removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "rb-config-test-XXXXXX").string();
    char* made = ::mkdtemp(tmpl.data());
    path_ = made != nullptr ? made : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Join(std::string_view name) const { return path_ + "/" + std::string(name); }

  // Writes `contents` to path()/name, creating parent directories; returns the full path.
  std::string Write(std::string_view name, std::string_view contents) const {
    const std::string full = Join(name);
    std::filesystem::create_directories(std::filesystem::path(full).parent_path());
    std::ofstream(full, std::ios::binary) << contents;
    return full;
  }

 private:
  std::string path_;
};

inline std::vector<std::string> Strings(const std::vector<Diagnostic>& diags) {
  std::vector<std::string> out;
  for (const Diagnostic& d : diags) out.push_back(d.ToString());
  return out;
}

// Loads `text` as "pgbouncer.ini" without reading auth or hba files.
inline LoadResult LoadText(std::string_view text, LoadOptions options = {}) {
  options.load_auth_file = false;
  options.load_hba_file = false;
  return LoadConfigText(text, "pgbouncer.ini", options);
}

// A [pgbouncer] section with `body` in it, starting at line 2. An auth_file line follows the body
// (it is not read), so that the "no user can log in" warning stays out of the way.
inline LoadResult LoadSettings(std::string_view body) {
  return LoadText("[pgbouncer]\n" + std::string(body) + "\nauth_file = userlist.txt\n");
}

}  // namespace rb::engine::testing
