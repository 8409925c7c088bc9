// SASLprep (RFC 4013) of passwords, the way PostgreSQL's pg_saslprep() does it, for SCRAM.
//
// PostgreSQL runs every SCRAM password through pg_saslprep() before PBKDF2, on both sides
// (libpq and the server). A pooler that derives SCRAM keys from a plain-text password must do
// the same, or non-ASCII passwords fail to log in. pg_saslprep():
//   1. returns a pure-ASCII string unchanged (no control-character check either);
//   2. returns "use the raw bytes" for anything that is not valid UTF-8;
//   3. maps non-ASCII spaces (RFC 3454 C.1.2) to U+0020 and drops B.1 characters (soft
//      hyphen, zero-width joiners, variation selectors, ...);
//   4. gives up ("use the raw bytes") when that leaves nothing;
//   5. normalises to NFKC;
//   6. gives up when the mapped (NOT the normalised) string holds a prohibited character
//      (C.2-C.9) or a code point unassigned in Unicode 3.2 (A.1), or breaks the bidi rule
//      (a right-to-left character anywhere requires no left-to-right character, and
//      right-to-left characters at both ends).
// Callers on both sides then use the raw password bytes whenever it gave up.
//
// Limitation: step 5 is implemented only where NFKC leaves each code point alone (almost
// every letter in practical use, precomposed accented Latin, Greek, Cyrillic, CJK, kana,
// Hangul syllables, Hebrew, Arabic, ...) and for fullwidth ASCII (U+FF01..FF5E), which NFKC
// maps to ASCII. A password that holds anything else that NFKC would change (compatibility
// characters like ligatures, superscripts, Roman numerals, decomposed accents, combining
// marks) is reported as kUnsupported and its raw bytes are returned; PostgreSQL would
// normalise it, so such a password works only when it is already in NFKC form. The class of
// every code point comes from a table generated from Unicode 14.0 (saslprep_gen.py).
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace rb::proto {

enum class [[nodiscard]] SaslPrepOutcome : uint8_t {
  kPrepared,     // exact: `out` is what pg_saslprep() yields (ASCII comes back unchanged)
  kRawBytes,     // exact: pg_saslprep() gives up here too, and PostgreSQL uses the raw bytes
  kUnsupported,  // NFKC would change the string and we can't compute it: `out` holds the raw
                 // bytes, which may differ from what PostgreSQL derives its keys from
};

[[nodiscard]] const char* SaslPrepOutcomeName(SaslPrepOutcome outcome);

// Prepares `password` for SCRAM key derivation. `out` always receives the bytes to use.
SaslPrepOutcome SaslPrep(absl::string_view password, std::string* out);

}  // namespace rb::proto
