#include "engine/var_cache.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rb::engine {

VarCache::VarCache(std::vector<std::string> names) : names_(std::move(names)) {}

std::vector<std::string> VarCache::DefaultNames() {
  return {"client_encoding", "DateStyle", "TimeZone", "standard_conforming_strings", "application_name"};
}

int VarCache::IndexOf(absl::string_view name) const {
  for (size_t i = 0; i < names_.size(); ++i)
    if (absl::EqualsIgnoreCase(names_[i], name)) return static_cast<int>(i);
  return -1;
}

const VarSet* VarCache::Intern(std::vector<std::string> values) {
  std::string key = absl::StrJoin(values, absl::string_view("\0", 1));
  auto it = sets_.find(key);
  if (it == sets_.end()) {
    auto set = std::make_unique<VarSet>();
    set->values = std::move(values);
    it = sets_.emplace(std::move(key), std::move(set)).first;
  }
  ++it->second->refs;
  return it->second.get();
}

const VarSet* VarCache::Empty() { return Intern(std::vector<std::string>(names_.size())); }

const VarSet* VarCache::With(const VarSet* base, int idx, absl::string_view value) {
  if (idx < 0 || static_cast<size_t>(idx) >= names_.size()) {
    Ref(base);
    return base;
  }
  if (base->values[idx] == value) {
    Ref(base);
    return base;
  }
  std::vector<std::string> v = base->values;
  v[idx] = std::string(value);
  return Intern(std::move(v));
}

const VarSet* VarCache::Overlay(const VarSet* base, const VarSet* over) {
  std::vector<std::string> v = base->values;
  for (size_t i = 0; i < v.size(); ++i)
    if (!over->values[i].empty()) v[i] = over->values[i];
  return Intern(std::move(v));
}

void VarCache::Unref(const VarSet* s) {
  if (--s->refs != 0) return;
  sets_.erase(absl::StrJoin(s->values, absl::string_view("\0", 1)));
}

int VarCache::BuildSetQuery(const VarSet* have, const VarSet* want, std::string* sql) const {
  if (have == want) return 0;
  int n = 0;
  for (size_t i = 0; i < names_.size(); ++i) {
    const std::string& w = want->values[i];
    if (w.empty() || w == have->values[i]) continue;
    absl::StrAppend(sql, "SET ", names_[i], "=", QuoteLiteral(w), ";");
    ++n;
  }
  return n;
}

std::string QuoteLiteral(absl::string_view value) {
  // With a backslash present, E'' syntax is the only form that means the same thing whatever
  // standard_conforming_strings says.
  bool backslash = absl::StrContains(value, '\\');
  std::string out = backslash ? "E'" : "'";
  for (char c : value) {
    if (c == '\'') out += '\'';
    if (c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

}  // namespace rb::engine
