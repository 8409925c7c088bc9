#include "tools/common/flags.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rb::tools {

void FlagSet::Add(const char* name, int64_t* value, const char* help) {
  flags_.push_back({name, value, help, absl::StrCat(*value)});
}
void FlagSet::Add(const char* name, double* value, const char* help) {
  flags_.push_back({name, value, help, absl::StrCat(*value)});
}
void FlagSet::Add(const char* name, std::string* value, const char* help) {
  flags_.push_back({name, value, help, absl::StrCat("\"", *value, "\"")});
}
void FlagSet::Add(const char* name, bool* value, const char* help) {
  flags_.push_back({name, value, help, *value ? "true" : "false"});
}

absl::Status FlagSet::Set(Flag& flag, const std::string& text) {
  bool ok = true;
  if (auto* i = std::get_if<int64_t*>(&flag.value)) {
    ok = absl::SimpleAtoi(text, *i);
  } else if (auto* d = std::get_if<double*>(&flag.value)) {
    ok = absl::SimpleAtod(text, *d);
  } else if (auto* s = std::get_if<std::string*>(&flag.value)) {
    **s = text;
  } else {
    ok = absl::SimpleAtob(text, std::get<bool*>(flag.value));
  }
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("--", flag.name, ": bad value \"", text, "\""));
  return absl::OkStatus();
}

absl::Status FlagSet::Parse(int argc, char** argv, std::vector<std::string>* positional) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      return absl::OkStatus();
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      positional->push_back(arg);
      continue;
    }
    size_t eq = arg.find('=');
    std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    Flag* flag = nullptr;
    for (Flag& f : flags_) {
      if (name == f.name) flag = &f;
    }
    if (flag == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
    if (eq != std::string::npos) {
      if (absl::Status s = Set(*flag, arg.substr(eq + 1)); !s.ok()) return s;
    } else if (std::holds_alternative<bool*>(flag->value)) {
      *std::get<bool*>(flag->value) = true;
    } else if (i + 1 < argc) {
      if (absl::Status s = Set(*flag, argv[++i]); !s.ok()) return s;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out = usage_;
  out += "\nOptions:\n";
  for (const Flag& f : flags_) {
    const bool is_bool = std::holds_alternative<bool*>(f.value);
    const char* value = is_bool ? "" : std::holds_alternative<std::string*>(f.value) ? " TEXT" : " NUM";
    absl::StrAppendFormat(&out, "  %-24s %s", absl::StrCat("--", f.name, value), f.help);
    // Booleans default to off, and an empty text says nothing.
    if (!is_bool && f.default_text != "\"\"") absl::StrAppend(&out, " (default ", f.default_text, ")");
    out += "\n";
  }
  absl::StrAppendFormat(&out, "  %-24s %s\n", "--help", "this text");
  return out;
}

}  // namespace rb::tools
