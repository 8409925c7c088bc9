// The body of `ringbouncer --check -c FILE`: load a config the way start-up and RELOAD do, and
// report every problem instead of stopping at the first.
#pragma once

#include <ostream>
#include <string>

#include "engine/config.h"

namespace rb::engine {

// Loads `path` (with its %include files, its auth_file and, for auth_type = hba, its
// auth_hba_file) and prints one line per warning and error, then a summary:
//
//   warning: /etc/pgbouncer/pgbouncer.ini:12: "pkt_buf" has no effect in ringbouncer; ignored
//   error: /etc/pgbouncer/pgbouncer.ini:30: invalid value "abc" for "listen_port": expected an integer
//   /etc/pgbouncer/pgbouncer.ini: 1 error, 1 warning; the configuration would not be loaded
//
// Returns the process exit code: 0 when the configuration is valid (warnings allowed), 1 when it
// has errors.
int RunConfigCheck(const std::string& path, std::ostream& out, const LoadOptions& options = {});

}  // namespace rb::engine
