// Log line shapes that scripts written for PgBouncer match on (engine/log.h).
#include "engine/log.h"

#include <string>

#include "tests/catch.h"

namespace rb::engine {
namespace {

TEST_CASE("log prefix: PgBouncer's C-0x...: db/user@host:port with placeholders and unix peers") {
  CHECK(SocketLogPrefix('C', 0x1000000000005, "rbtest", "rb_md5", "127.0.0.1", false, 51234) ==
        "C-0x1000000000005: rbtest/rb_md5@127.0.0.1:51234");
  CHECK(SocketLogPrefix('S', 0x2a, "db", "u", "10.0.0.1", false, 5432) == "S-0x2a: db/u@10.0.0.1:5432");
  CHECK(SocketLogPrefix('C', 7, "", "", "127.0.0.1", false, 1) == "C-0x7: (nodb)/(nouser)@127.0.0.1:1");
  CHECK(SocketLogPrefix('C', 7, "db", "", "::1", true, 2) == "C-0x7: db/(nouser)@[::1]:2");
  CHECK(SocketLogPrefix('C', 7, "db", "u", "unix(4242)", false, 6432) == "C-0x7: db/u@unix(4242):6432");
  CHECK(SocketLogPrefix('C', 7, "db", "u", "unix", false, 6432) == "C-0x7: db/u@unix:6432");
  CHECK(ConnLogId(0x1000000000005) == "0x1000000000005");
}

}  // namespace
}  // namespace rb::engine
