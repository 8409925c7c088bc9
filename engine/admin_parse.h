// The admin console's query grammar, as PgBouncer reads it (src/admin.c, three anchored
// case-insensitive POSIX regexes):
//
//   CMD [ARG] [;]              a word, optionally a second word, optionally a semicolon
//   SET KEY (=|TO) WORD [;]    a bare or "double-quoted" value
//   SET KEY (=|TO) 'STRING' [;]
//
// where a word is [0-9a-zA-Z_]+ or a "double-quoted" string with "" for a quote, and blanks
// are space, tab, CR and LF. Quotes are removed (and doubled quotes undone) from what is
// returned. PgBouncer copies the parts into fixed buffers, and a part too long for its buffer
// is "bad arguments" rather than an unknown command; the limits below are those buffers.
//
// Pure, with no engine dependencies, so it can be tested byte by byte.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace rb::engine {

struct AdminCommand {
  enum class Kind {
    kCommand,       // `cmd` and `arg` (empty when absent)
    kSet,           // `key` and `value`
    kSyntaxError,   // matches none of the forms: "invalid command '...', use SHOW HELP;"
    kBadArguments,  // matches, but a part is too long (or a SET key is empty): "bad arguments"
  };
  Kind kind = Kind::kSyntaxError;
  std::string cmd;
  std::string arg;
  std::string key;
  std::string value;
};

// PgBouncer's buffer sizes: a part's raw length (quotes included) must be below these.
inline constexpr size_t kAdminCmdMax = 16;
inline constexpr size_t kAdminArgMax = 64;
inline constexpr size_t kAdminValueMax = 256;

AdminCommand ParseAdminCommand(absl::string_view query);

// A console error message as PgBouncer formats it: into a 1024-byte buffer, so at most 1023
// bytes survive.
std::string TruncateAdminMessage(std::string message);

}  // namespace rb::engine
