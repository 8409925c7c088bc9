// Tokenizers for the pgbouncer.ini format: the ini file itself and the libpq-like connection
// strings of its [databases], [users] and [peers] sections.
//
// Both follow PgBouncer 1.25 (libusual's cfparser.c and PgBouncer's loader.c), because operators
// point ringbouncer at files written for PgBouncer. Where PgBouncer is lax in a way that can only
// hurt (garbage after a quoted value, a half-quoted name), these tokenizers report an error instead.
// They are sans-IO: %include is reported as an item, and the loader (config.cc) reads the file.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace rb::engine {

// One finding of the config loader, tied to a place in a file. line 0 means the file as a whole.
// Diagnostics never contain secrets: the loaders quote setting values, never passwords.
struct Diagnostic {
  std::string file;
  int line = 0;
  std::string message;

  // "file:line: message", or "file: message" when line is 0.
  std::string ToString() const;
  bool operator==(const Diagnostic&) const = default;
};

struct IniItem {
  enum class Kind {
    kSection,   // "[name]": key holds the name, exactly as written between the brackets
    kKeyValue,  // "key = value": value has surrounding blanks removed, and nothing else
    kInclude,   // "%include path": value holds the path, exactly as written
  };
  Kind kind = Kind::kKeyValue;
  std::string key;
  std::string value;
  bool key_quoted = false;  // the key was written in quotes ("my db" = ...)
  int line = 0;
};

struct IniParseResult {
  std::vector<IniItem> items;
  std::vector<Diagnostic> errors;
};

// Splits ini text into sections, key/value pairs and %include directives. Rules (libusual's):
//  - Lines are separated by '\n'; a trailing '\r' is blank space, so CRLF files work. A UTF-8
//    byte order mark at the start is skipped (PgBouncer would fail on it).
//  - After leading blanks, a line starting with ';' or '#' is a comment. Both are ordinary
//    characters anywhere else, so "server_reset_query = DISCARD ALL; -- x" keeps the "; -- x".
//  - "[name]" starts a section. The name is not trimmed and is case-sensitive, as in PgBouncer.
//    Only blanks or a comment may follow the ']'.
//  - "%include path" (the directive, then a blank) names a file to read in place of the line.
//  - A key is a run of [A-Za-z0-9_.*-], or a quoted name: "..." with "" for a double quote (SQL
//    identifier rules, for database and user names with other characters), or '...' (older
//    PgBouncer releases; no escapes). Then '=' and the value: the rest of the line, trimmed.
//    Values are never unquoted at this level: `logfile = "x"` sets a name with quotes in it.
// Errors name the line and the line is skipped; the rest of the text is still read, so one pass
// finds every mistake.
IniParseResult ParseIni(std::string_view text, std::string_view file_name);

// One key=value pair of a connection string.
using ConnParam = std::pair<std::string, std::string>;

// Parses a PgBouncer connection string: "host=db1 port=5432 password='it''s'". Rules (PgBouncer's
// loader.c, not libpq's):
//  - Pairs are separated by blanks; blanks around '=' are allowed.
//  - A key runs up to '=' or a blank. A value runs up to a blank, or is single-quoted, with ''
//    standing for one quote. A backslash is an ordinary character: PgBouncer does not treat it as
//    an escape, and an existing password containing one must keep meaning the same.
//  - Empty values (host= or host='') are errors, as in PgBouncer.
// Keys are returned in order, duplicates included; the caller decides what they mean.
absl::StatusOr<std::vector<ConnParam>> ParseConnString(std::string_view text);

// Quotes a value for a connection string when it needs it (blank, quote or empty), so that
// ParseConnString("k=" + QuoteConnValue(v)) gives v back.
std::string QuoteConnValue(std::string_view value);

// File helpers shared by the loaders (the tokenizers above never touch files).
//
// Reads a whole file. On failure the message is: could not read "PATH": <reason>.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);
// `path` when it is absolute or `relative_to` is empty, else relative_to/path.
std::string ResolvePath(std::string_view path, std::string_view relative_to);

}  // namespace rb::engine
