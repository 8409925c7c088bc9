// The session parameters a pooled server must agree on with each client it serves.
//
// PostgreSQL reports these in ParameterStatus messages, and clients set them in the startup
// packet or with SET. A server that was last used by a client with another client_encoding or
// TimeZone must be brought in line before it serves this one, so the pooler sends SET first
// (DESIGN.md decision 5). The tracked names are the ones PgBouncer tracks plus
// track_extra_parameters.
//
// A VarSet is one full set of values, interned per worker: thousands of clients with the same
// settings share one set, and comparing two sets is a pointer compare in the common case.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace rb::engine {

struct VarSet {
  std::vector<std::string> values;  // one per tracked name; empty = not known
  mutable uint32_t refs = 0;
};

class VarCache {
 public:
  // Names in the case PostgreSQL reports them (e.g. "DateStyle"); matched case-insensitively.
  explicit VarCache(std::vector<std::string> names);
  VarCache(const VarCache&) = delete;
  VarCache& operator=(const VarCache&) = delete;

  static std::vector<std::string> DefaultNames();

  const std::vector<std::string>& names() const { return names_; }
  int IndexOf(absl::string_view name) const;

  // The interned set with every value empty. Each call returns a new reference.
  const VarSet* Empty();
  // `base` with value[idx] replaced, interned; a new reference. `base` keeps its reference.
  const VarSet* With(const VarSet* base, int idx, absl::string_view value);
  // `base` with every non-empty value of `over` applied on top.
  const VarSet* Overlay(const VarSet* base, const VarSet* over);

  void Ref(const VarSet* s) { ++s->refs; }
  void Unref(const VarSet* s);

  // Appends to *sql the SET statements that turn `have` into `want`, for values `want` knows
  // and `have` differs on. Returns the number of statements.
  int BuildSetQuery(const VarSet* have, const VarSet* want, std::string* sql) const;

  size_t interned() const { return sets_.size(); }

 private:
  const VarSet* Intern(std::vector<std::string> values);

  std::vector<std::string> names_;
  absl::flat_hash_map<std::string, std::unique_ptr<VarSet>> sets_;  // key: values joined by '\0'
};

// Quotes a value as an SQL string literal for SET.
std::string QuoteLiteral(absl::string_view value);

}  // namespace rb::engine
