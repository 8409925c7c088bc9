#include <sys/utsname.h>

#include <cstdio>
#include <string>

#include "netio/features.h"
#include "tests/catch.h"
#include "tests/netio/netio_test_util.h"

namespace rb::netio {
namespace {

// "6.18.44-fc" -> 6 * 1000 + 18.
int KernelVersion(const std::string& release) {
  int major = 0, minor = 0;
  if (std::sscanf(release.c_str(), "%d.%d", &major, &minor) != 2) return 0;
  return major * 1000 + minor;
}

TEST_CASE("ProbeFeatures reports the floor as met on this kernel", "[netio][features]") {
  const Features& f = testing::ProbedFeatures();
  std::string missing = "untouched";
  CHECK(f.MeetsFloor(&missing));
  CHECK(missing == "untouched");  // only written when something is missing
  CHECK(f.MeetsFloor(nullptr));
  utsname u{};
  REQUIRE(uname(&u) == 0);
  CHECK(f.kernel_release == u.release);
}

TEST_CASE("ProbeFeatures finds what kernels from 6.12 on have", "[netio][features]") {
  const Features& f = testing::ProbedFeatures();
  if (KernelVersion(f.kernel_release) < 6012) {
    WARN("kernel " << f.kernel_release << " is older than 6.12; skipping the expectations for newer features");
    return;
  }
  CHECK(f.single_issuer);
  CHECK(f.defer_taskrun);
  CHECK(f.coop_taskrun);
  CHECK(f.submit_all);
  CHECK(f.ext_arg);
  CHECK(f.nodrop);
  CHECK(f.cqe_skip);
  CHECK(f.buf_ring);
  CHECK(f.recv_multishot);
  CHECK(f.accept_multishot);
  CHECK(f.send_zc);
  CHECK(f.msg_ring);
  CHECK(f.msg_ring_fd);
  CHECK(f.recv_bundle);
  CHECK(f.buf_ring_inc);
  CHECK(f.fixed_fd_install);
  CHECK(f.register_ring_fd);
  // napi depends on CONFIG_NET_RX_BUSY_POLL, not on the version: not asserted.
}

TEST_CASE("Features::Describe mentions every feature and the kernel", "[netio][features]") {
  const Features& f = testing::ProbedFeatures();
  const std::string d = f.Describe();
  INFO(d);
  CHECK(d.find(f.kernel_release) != std::string::npos);
  for (const char* name :
       {"single_issuer", "defer_taskrun", "coop_taskrun", "submit_all", "ext_arg", "nodrop", "cqe_skip", "buf_ring",
        "recv_multishot", "accept_multishot", "send_zc", "msg_ring", "msg_ring_fd", "msg_ring_cqe_skip",
        "recv_bundle", "buf_ring_inc", "fixed_fd_install", "register_ring_fd", "napi"}) {
    INFO(name);
    CHECK(d.find(std::string(name) + "=") != std::string::npos);
  }
  // The values follow the struct.
  Features none;
  none.kernel_release = "0.0-test";
  CHECK(none.Describe().find("=yes") == std::string::npos);
  Features some = none;
  some.napi = true;
  CHECK(some.Describe().find("napi=yes") != std::string::npos);
}

TEST_CASE("MeetsFloor names what is missing", "[netio][features]") {
  Features none;
  std::string missing;
  CHECK_FALSE(none.MeetsFloor(&missing));
  CHECK(missing.find("IORING_FEAT_EXT_ARG") != std::string::npos);
  CHECK(missing.find("provided buffer rings") != std::string::npos);
  CHECK(missing.find("multishot recv") != std::string::npos);
  CHECK(missing.find("IORING_OP_MSG_RING") != std::string::npos);

  Features almost = testing::ProbedFeatures();
  almost.msg_ring = false;
  CHECK_FALSE(almost.MeetsFloor(&missing));
  CHECK(missing == "IORING_OP_MSG_RING");
}

TEST_CASE("WorkerSetupFlags follows the probe", "[netio][features]") {
  Features f;
  CHECK(f.WorkerSetupFlags() == 0);
  f.coop_taskrun = true;
  CHECK(f.WorkerSetupFlags() == IORING_SETUP_COOP_TASKRUN);
  f.single_issuer = f.defer_taskrun = true;
  // DEFER_TASKRUN replaces COOP_TASKRUN (completions only run when the worker waits anyway).
  CHECK(f.WorkerSetupFlags() == (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN));
  f.submit_all = true;
  CHECK((f.WorkerSetupFlags() & IORING_SETUP_SUBMIT_ALL));
}

}  // namespace
}  // namespace rb::netio
