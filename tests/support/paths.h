// Where things are: the source and build trees (baked in at build time) and the programs that
// integration tests run.
#pragma once

#include <string>

namespace rb::test {

std::string SourceDir();        // the repository root (RB_SOURCE_DIR)
std::string BinaryDir();        // the top of the build tree (RB_BINARY_DIR)
std::string RingbouncerPath();  // BinaryDir()/engine/ringbouncer; $RB_RINGBOUNCER overrides
std::string PgtmpPath();        // SourceDir()/tools/pgtmp; $RB_PGTMP overrides
// PostgreSQL's bin directory, found as tools/pgtmp finds it: $RB_PG_BINDIR, else the newest
// /usr/lib/postgresql/*/bin. Throws if there is none.
std::string PgBinDir();

}  // namespace rb::test
