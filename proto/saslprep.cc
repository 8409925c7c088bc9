#include "proto/saslprep.h"

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "proto/saslprep_table.h"

namespace rb::proto {
namespace {

using saslprep_table::Class;

// Strict UTF-8 (RFC 3629), the same acceptance as PostgreSQL's pg_utf8_islegal(): no overlong
// forms, no surrogates, nothing above U+10FFFF. Returns false on any invalid sequence.
bool DecodeUtf8(absl::string_view s, std::vector<uint32_t>* out) {
  out->clear();
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b0 = static_cast<uint8_t>(s[i]);
    size_t len;
    uint32_t cp;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 < 0x80) {
      out->push_back(b0);
      ++i;
      continue;
    } else if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2;
      cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3;
      cp = b0 & 0x0F;
      if (b0 == 0xE0) lo = 0xA0;  // overlong
      if (b0 == 0xED) hi = 0x9F;  // surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      cp = b0 & 0x07;
      if (b0 == 0xF0) lo = 0x90;  // overlong
      if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      const uint8_t b = static_cast<uint8_t>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    out->push_back(cp);
    i += len;
  }
  return true;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

Class ClassOf(uint32_t cp) {
  if (cp < 0x80) {
    // C.2.1: ASCII control characters are prohibited once the string is not pure ASCII.
    if (cp < 0x20 || cp == 0x7F) return saslprep_table::kProhibited;
    // D.2 (LCat) covers the ASCII letters; everything else in ASCII is neutral. ASCII is inert.
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z')) return saslprep_table::kLInert;
    return saslprep_table::kNeutralInert;
  }
  // Last range whose start is <= cp. kRanges starts at U+0080, so `it` is never begin().
  const uint32_t key = (cp << 8) | 0xFF;
  const auto* it = std::upper_bound(std::begin(saslprep_table::kRanges),
                                    std::end(saslprep_table::kRanges), key);
  return static_cast<Class>(*std::prev(it) & 0xFF);
}

bool IsRandAl(Class c) {
  return c == saslprep_table::kRandAlInert || c == saslprep_table::kRandAlOther;
}
bool IsL(Class c) {
  return c == saslprep_table::kLInert || c == saslprep_table::kLOther ||
         c == saslprep_table::kLFullwidth;
}

}  // namespace

const char* SaslPrepOutcomeName(SaslPrepOutcome outcome) {
  switch (outcome) {
    case SaslPrepOutcome::kPrepared:
      return "prepared";
    case SaslPrepOutcome::kRawBytes:
      return "raw bytes (as PostgreSQL)";
    case SaslPrepOutcome::kUnsupported:
      return "raw bytes (normalisation unsupported)";
  }
  return "unknown";
}

SaslPrepOutcome SaslPrep(absl::string_view password, std::string* out) {
  out->assign(password.data(), password.size());
  const bool ascii = std::all_of(password.begin(), password.end(),
                                 [](char c) { return static_cast<uint8_t>(c) < 0x80; });
  if (ascii) return SaslPrepOutcome::kPrepared;

  std::vector<uint32_t> chars;
  if (!DecodeUtf8(password, &chars)) return SaslPrepOutcome::kRawBytes;

  // Step 1, mapping, and the class of each surviving code point.
  std::vector<uint32_t> mapped;
  std::vector<Class> classes;
  mapped.reserve(chars.size());
  classes.reserve(chars.size());
  for (uint32_t cp : chars) {
    const Class c = ClassOf(cp);
    if (c == saslprep_table::kMapToNothing) continue;
    if (c == saslprep_table::kMapToSpace) {
      mapped.push_back(0x20);
      classes.push_back(saslprep_table::kNeutralInert);
      continue;
    }
    mapped.push_back(cp);
    classes.push_back(c);
  }
  if (mapped.empty()) return SaslPrepOutcome::kRawBytes;  // PostgreSQL: no empty passwords

  // Steps 3 and 4 look at the mapped string, before normalisation (as PostgreSQL does), so
  // they give an exact answer even where we can't normalise.
  bool has_rand_al = false, has_l = false;
  for (Class c : classes) {
    if (c == saslprep_table::kProhibited) return SaslPrepOutcome::kRawBytes;
    has_rand_al |= IsRandAl(c);
    has_l |= IsL(c);
  }
  if (has_rand_al && (has_l || !IsRandAl(classes.front()) || !IsRandAl(classes.back()))) {
    return SaslPrepOutcome::kRawBytes;
  }

  // Step 2, NFKC: identity on inert code points; fullwidth ASCII maps to ASCII. The result is
  // the concatenation because no inert code point composes with what precedes it.
  std::string prepared;
  prepared.reserve(password.size());
  for (size_t i = 0; i < mapped.size(); ++i) {
    switch (classes[i]) {
      case saslprep_table::kRandAlInert:
      case saslprep_table::kLInert:
      case saslprep_table::kNeutralInert:
        AppendUtf8(mapped[i], &prepared);
        break;
      case saslprep_table::kLFullwidth:
      case saslprep_table::kNeutralFullwidth:
        AppendUtf8(mapped[i] - 0xFEE0, &prepared);
        break;
      default:
        return SaslPrepOutcome::kUnsupported;
    }
  }
  *out = std::move(prepared);
  return SaslPrepOutcome::kPrepared;
}

}  // namespace rb::proto
