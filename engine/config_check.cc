#include "engine/config_check.h"

#include "absl/strings/str_format.h"

namespace rb::engine {
namespace {

std::string Count(size_t n, std::string_view what) {
  return absl::StrFormat("%d %s%s", n, std::string(what), n == 1 ? "" : "s");
}

}  // namespace

int RunConfigCheck(const std::string& path, std::ostream& out, const LoadOptions& options) {
  LoadResult result = LoadConfigFile(path, options);
  for (const Diagnostic& d : result.warnings) out << "warning: " << d.ToString() << "\n";
  for (const Diagnostic& d : result.errors) out << "error: " << d.ToString() << "\n";
  if (!result.ok()) {
    out << path << ": " << Count(result.errors.size(), "error") << ", "
        << Count(result.warnings.size(), "warning") << "; the configuration would not be loaded\n";
    return 1;
  }
  const Config& config = *result.config;
  out << path << ": OK, " << Count(result.warnings.size(), "warning") << "; "
      << Count(config.databases.size() + (config.fallback_database ? 1 : 0), "database") << ", "
      << Count(config.auth_file.users.size(), "user") << " in auth_file\n";
  return 0;
}

}  // namespace rb::engine
