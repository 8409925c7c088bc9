// A small command-line parser for the tools: `--name value`, `--name=value`, boolean `--name`,
// positional arguments, and a --help generated from the same table.
//
// Debian 12's absl/flags works, but its flag names can't contain '-', and the tools' options
// follow PgBouncer's and pgbench's dashed style (--connect-timeout, --allow-errors).
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"

namespace rb::tools {

class FlagSet {
 public:
  // `usage` heads --help: what the program does and its positional arguments.
  explicit FlagSet(std::string usage) : usage_(std::move(usage)) {}

  // Each option writes into `*value`, whose value at registration is the default --help shows.
  void Add(const char* name, int64_t* value, const char* help);
  void Add(const char* name, double* value, const char* help);
  void Add(const char* name, std::string* value, const char* help);
  void Add(const char* name, bool* value, const char* help);

  // Fills the registered values and `positional`. --help (or -h) sets help_requested() and
  // stops parsing. Errors name the offending argument.
  absl::Status Parse(int argc, char** argv, std::vector<std::string>* positional);
  bool help_requested() const { return help_; }
  std::string Usage() const;

 private:
  struct Flag {
    const char* name;
    std::variant<int64_t*, double*, std::string*, bool*> value;
    const char* help;
    std::string default_text;  // the value at registration
  };
  absl::Status Set(Flag& flag, const std::string& text);

  std::string usage_;
  std::vector<Flag> flags_;
  bool help_ = false;
};

}  // namespace rb::tools
