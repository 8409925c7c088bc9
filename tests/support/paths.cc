#include "tests/support/paths.h"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace rb::test {
namespace {

std::string EnvOr(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

}  // namespace

std::string SourceDir() { return RB_SOURCE_DIR; }
std::string BinaryDir() { return RB_BINARY_DIR; }
std::string RingbouncerPath() { return EnvOr("RB_RINGBOUNCER", BinaryDir() + "/engine/ringbouncer"); }
std::string PgtmpPath() { return EnvOr("RB_PGTMP", SourceDir() + "/tools/pgtmp"); }

std::string PgBinDir() {
  if (const char* dir = std::getenv("RB_PG_BINDIR"); dir != nullptr && *dir != '\0') return dir;
  namespace fs = std::filesystem;
  std::error_code ec;
  int best_version = -1;
  std::string best;
  for (const fs::directory_entry& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string name = entry.path().filename().string();
    char* end = nullptr;
    long version = std::strtol(name.c_str(), &end, 10);
    if (end == name.c_str() || *end != '\0') continue;
    const fs::path bin = entry.path() / "bin";
    if (fs::exists(bin / "initdb", ec) && version > best_version) {
      best_version = static_cast<int>(version);
      best = bin.string();
    }
  }
  if (best.empty()) throw std::runtime_error("no PostgreSQL in /usr/lib/postgresql/*/bin");
  return best;
}

}  // namespace rb::test
