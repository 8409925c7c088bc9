// auth_hba_file parsing and lookup.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "engine/hba.h"
#include "tests/catch.h"
#include "tests/engine/test_config_util.h"

namespace rb::engine {
namespace {

using testing::Strings;
using testing::TempDir;
using Lines = std::vector<std::string>;

HbaRules Parse(std::string_view text, std::string_view base_dir = "") {
  HbaResult r = ParseHba(text, "hba.conf", base_dir);
  for (const std::string& w : Strings(r.warnings)) UNSCOPED_INFO(w);
  REQUIRE(r.ok());
  return r.rules;
}

// A TCP client at `addr`; "local" for a Unix-socket client.
HbaQuery Client(std::string_view addr, std::string_view db, std::string_view user, bool tls = false) {
  HbaQuery q;
  q.database = db;
  q.user = user;
  q.is_tls = tls;
  if (addr == "local") {
    q.is_unix = true;
  } else {
    q.address = IpAddress::Parse(addr);
    REQUIRE(q.address.has_value());
  }
  return q;
}

// The method name of the first matching rule, or "none".
std::string Method(const HbaRules& rules, const HbaQuery& q) {
  std::optional<HbaMatch> m = rules.Lookup(q);
  return m ? std::string(HbaMethodName(m->method)) : "none";
}

TEST_CASE("the first matching rule decides and no match means none", "[hba]") {
  HbaRules rules = Parse(
      "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
      "local   all       all                 peer\n"
      "host    app       alice 10.1.0.0/16   trust\n"
      "host    all       all   10.0.0.0/8    scram-sha-256\n"
      "host    all       all   ::1/128       md5\n");
  CHECK(rules.rules.size() == 4);
  CHECK(Method(rules, Client("local", "app", "alice")) == "peer");
  CHECK(Method(rules, Client("10.1.2.3", "app", "alice")) == "trust");
  CHECK(Method(rules, Client("10.1.2.3", "app", "bob")) == "scram-sha-256");
  CHECK(Method(rules, Client("10.200.0.1", "app", "alice")) == "scram-sha-256");
  CHECK(Method(rules, Client("::1", "x", "y")) == "md5");
  CHECK(Method(rules, Client("192.168.0.1", "app", "alice")) == "none");
  CHECK(rules.Lookup(Client("10.1.2.3", "app", "alice"))->line == 3);
}

TEST_CASE("hostssl and hostnossl depend on TLS and local applies only on Unix sockets", "[hba]") {
  HbaRules rules = Parse(
      "hostssl   all all 0.0.0.0/0 scram-sha-256\n"
      "hostnossl all all 0.0.0.0/0 reject\n");
  CHECK(Method(rules, Client("1.2.3.4", "d", "u", /*tls=*/true)) == "scram-sha-256");
  CHECK(Method(rules, Client("1.2.3.4", "d", "u", /*tls=*/false)) == "reject");
  CHECK(Method(rules, Client("local", "d", "u")) == "none");
}

TEST_CASE("addresses as all or CIDR or address plus mask or IPv6 and IPv4-mapped clients", "[hba]") {
  HbaRules rules = Parse(
      "host all a 192.168.1.0 255.255.255.0 md5\n"
      "host all b all trust\n"
      "host all c fe80::/10 password\n"
      "host all d 127.0.0.1/32 md5\n");
  CHECK(Method(rules, Client("192.168.1.77", "x", "a")) == "md5");
  CHECK(Method(rules, Client("192.168.2.1", "x", "a")) == "none");
  CHECK(Method(rules, Client("8.8.8.8", "x", "b")) == "trust");
  CHECK(Method(rules, Client("::1", "x", "b")) == "trust");
  CHECK(Method(rules, Client("fe80::1234", "x", "c")) == "password");
  CHECK(Method(rules, Client("2001:db8::1", "x", "c")) == "none");
  // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
  CHECK(Method(rules, Client("::ffff:127.0.0.1", "x", "d")) == "md5");
  CHECK(Method(rules, Client("::ffff:192.168.1.5", "x", "a")) == "md5");
}

TEST_CASE("database and user lists with names and quoted names and all and sameuser", "[hba]") {
  HbaRules rules = Parse(
      "host sameuser all 0.0.0.0/0 trust\n"
      "host app,\"odd db\",\"all\" alice,\"Bob\" 0.0.0.0/0 md5\n");
  CHECK(Method(rules, Client("1.1.1.1", "carol", "carol")) == "trust");
  CHECK(Method(rules, Client("1.1.1.1", "app", "alice")) == "md5");
  CHECK(Method(rules, Client("1.1.1.1", "odd db", "Bob")) == "md5");
  CHECK(Method(rules, Client("1.1.1.1", "app", "bob")) == "none");
  // A quoted "all" is a database named all, not the keyword.
  CHECK(Method(rules, Client("1.1.1.1", "all", "alice")) == "md5");
  CHECK(Method(rules, Client("1.1.1.1", "other", "alice")) == "none");
}

TEST_CASE("replication connections match only the replication keyword", "[hba]") {
  HbaRules rules = Parse(
      "host all         all  0.0.0.0/0 trust\n"
      "host replication repl 0.0.0.0/0 scram-sha-256\n");
  HbaQuery q = Client("1.2.3.4", "replication", "repl");
  q.replication = true;
  CHECK(Method(rules, q) == "scram-sha-256");
  q.user = "other";
  CHECK(Method(rules, q) == "none");
  CHECK(Method(rules, Client("1.2.3.4", "app", "repl")) == "trust");
}

TEST_CASE("@file lists are read relative to the directory of the hba file", "[hba]") {
  TempDir dir;
  dir.Write("staff.txt", "alice, bob\n# comment\ncarol dave\n");
  dir.Write("dbs.txt", "app\n");
  dir.Write("hba.conf", "host @dbs.txt @staff.txt 0.0.0.0/0 md5\n");
  HbaResult r = LoadHbaFile(dir.Join("hba.conf"));
  REQUIRE(r.ok());
  REQUIRE(r.warnings.empty());
  CHECK(r.rules.rules[0].users.names == Lines{"alice", "bob", "carol", "dave"});
  CHECK(Method(r.rules, Client("1.1.1.1", "app", "dave")) == "md5");
  CHECK(Method(r.rules, Client("1.1.1.1", "other", "dave")) == "none");
}

TEST_CASE("options map= for peer and cert and name=value for ldap", "[hba]") {
  HbaResult r = ParseHba(
      "local all all peer map=localmap\n"
      "host all all 0.0.0.0/0 ldap ldapurl=\"ldap://127.0.0.1/dc=example?uid?sub\" ldaptls=1\n",
      "hba.conf", "");
  REQUIRE(r.ok());
  REQUIRE(r.rules.rules.size() == 2);
  CHECK(r.rules.rules[0].map == "localmap");
  CHECK(r.rules.Lookup(Client("local", "d", "u"))->map == "localmap");
  CHECK(r.rules.rules[1].options ==
        std::vector<std::pair<std::string, std::string>>{
            {"ldapurl", "ldap://127.0.0.1/dc=example?uid?sub"}, {"ldaptls", "1"}});
  CHECK(Strings(r.warnings) ==
        Lines{"hba.conf:2: method \"ldap\" is not supported yet by ringbouncer; clients matching "
              "this line will be refused"});
}

TEST_CASE("lines PgBouncer cannot use are skipped with a warning as PgBouncer does", "[hba]") {
  HbaResult r = ParseHba(
      "hostgssenc all all 0.0.0.0/0 md5\n"
      "host samerole all 0.0.0.0/0 md5\n"
      "host all +admins 0.0.0.0/0 md5\n"
      "host all all db.example.com md5\n"
      "host all all samenet md5\n"
      "host all all 10.0.0.1/8 md5\n"
      "host all all 10.0.0.0/33 md5\n"
      "host all all 10.0.0.0 md5\n"
      "host all all 0.0.0.0/0 pam\n"
      "host all all 0.0.0.0/0 gss\n"
      "host all all 0.0.0.0/0 md5 map=x\n"
      "host \"open all 0.0.0.0/0 md5\n"
      "host all\n"
      "local all all\n"
      "host all all 0.0.0.0/0 trust # a comment is fine\n",
      "hba.conf", "");
  REQUIRE(r.ok());
  CHECK(r.rules.rules.size() == 1);
  CHECK(Strings(r.warnings) ==
        Lines{
            "hba.conf:1: unknown connection type \"hostgssenc\" (expected local, host, hostssl or "
            "hostnossl); line ignored",
            "hba.conf:2: \"samerole\" is not supported; line ignored",
            "hba.conf:3: group names (\"+admins\") are not supported; line ignored",
            "hba.conf:4: invalid address \"db.example.com\" (host names are not supported; use an "
            "IP address); line ignored",
            "hba.conf:5: address \"samenet\" is not supported; line ignored",
            "hba.conf:6: address 10.0.0.1 has bits set outside the mask 255.0.0.0, so the rule "
            "could never match; line ignored",
            "hba.conf:7: invalid mask length \"/33\"; line ignored",
            "hba.conf:8: invalid network mask \"md5\"; line ignored",
            "hba.conf:9: method \"pam\" is not allowed in the hba file (only as auth_type); line "
            "ignored",
            "hba.conf:10: unknown authentication method \"gss\"; line ignored",
            "hba.conf:11: option \"map\" is only allowed with cert and peer; line ignored",
            "hba.conf:12: quoted name is not closed; line ignored",
            "hba.conf:13: missing user name; line ignored",
            "hba.conf:14: missing authentication method; line ignored",
        });
}

TEST_CASE("peer on a TCP line is kept so those clients are refused rather than passed on", "[hba]") {
  HbaResult r = ParseHba("host all all 0.0.0.0/0 peer\nhost all all 0.0.0.0/0 trust\n", "hba.conf", "");
  REQUIRE(r.rules.rules.size() == 2);
  CHECK(Method(r.rules, Client("1.2.3.4", "d", "u")) == "peer");
  CHECK(Strings(r.warnings) ==
        Lines{"hba.conf:1: method \"peer\" works only for local connections; TCP clients matching "
              "this line will be refused"});
}

TEST_CASE("a missing hba file is an error and a missing @file skips its line", "[hba]") {
  TempDir dir;
  HbaResult missing = LoadHbaFile("nope.conf", dir.path());
  CHECK(Strings(missing.errors) ==
        Lines{"nope.conf: could not read \"" + dir.Join("nope.conf") + "\": No such file or directory"});
  dir.Write("hba.conf", "host all @nobody.txt 0.0.0.0/0 md5\n");
  HbaResult r = LoadHbaFile("hba.conf", dir.path());
  REQUIRE(r.ok());
  CHECK(Strings(r.warnings) ==
        Lines{"hba.conf:1: could not read \"" + dir.Join("nobody.txt") +
              "\": No such file or directory; line ignored"});
}

TEST_CASE("client addresses come from sockaddr with IPv4-mapped IPv6 turned into IPv4", "[hba]") {
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:10.0.0.5", &in6.sin6_addr);
  std::optional<IpAddress> a = IpAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&in6));
  REQUIRE(a.has_value());
  CHECK(a->family == AF_INET);
  CHECK(a->ToString() == "10.0.0.5");

  sockaddr_in in4{};
  in4.sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.1", &in4.sin_addr);
  CHECK(IpAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&in4))->ToString() == "192.0.2.1");

  sockaddr un{};
  un.sa_family = AF_UNIX;
  CHECK_FALSE(IpAddress::FromSockaddr(&un).has_value());
  CHECK_FALSE(IpAddress::Parse("not-an-ip").has_value());
  CHECK(IpAddress::Parse("2001:db8::1")->ToString() == "2001:db8::1");
}

}  // namespace
}  // namespace rb::engine
