#include "netio/features.h"

#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "netio/buffer_ring.h"
#include "netio/uring_compat.h"

namespace rb::netio {
namespace {

// A tiny ring for probing; torn down at scope exit.
struct ProbeRing {
  io_uring ring{};
  bool ok = false;
  explicit ProbeRing(uint32_t flags = 0, io_uring_params* out = nullptr, int* error = nullptr) {
    io_uring_params p{};
    p.flags = flags;
    int ret = io_uring_queue_init_params(8, &ring, &p);
    ok = ret == 0;
    if (error) *error = ret < 0 ? -ret : 0;
    if (out) *out = p;
  }
  ~ProbeRing() {
    if (ok) io_uring_queue_exit(&ring);
  }
  // Submits and waits for one CQE; returns its res/flags.
  bool RunOne(int* res, uint32_t* flags = nullptr) {
    if (io_uring_submit(&ring) < 0) return false;
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts{1, 0};
    if (io_uring_wait_cqe_timeout(&ring, &cqe, &ts) != 0) return false;
    *res = cqe->res;
    if (flags) *flags = cqe->flags;
    io_uring_cqe_seen(&ring, cqe);
    return true;
  }
};

struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd); }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) close(f);
  }
};

bool TryRecvMultishot(bool bundle, bool incremental) {
  ProbeRing r;
  if (!r.ok) return false;
  auto br = BufferRing::Create(&r.ring, /*group=*/7, /*count=*/4, /*size=*/256, incremental);
  if (!br.ok()) return false;
  SocketPair sp;
  if (write(sp.fd[1], "x", 1) != 1) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(&r.ring);
  io_uring_prep_recv_multishot(sqe, sp.fd[0], nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = 7;
  if (bundle) sqe->ioprio |= kRecvSendBundle;
  int res = 0;
  uint32_t flags = 0;
  if (!r.RunOne(&res, &flags)) return false;
  bool ok = res == 1 && (flags & IORING_CQE_F_BUFFER) && (flags & IORING_CQE_F_MORE);
  // Cancel the still-armed recv before the ring goes away.
  sqe = io_uring_get_sqe(&r.ring);
  io_uring_prep_cancel_fd(sqe, sp.fd[0], 0);
  io_uring_submit(&r.ring);
  return ok;
}

bool TryMsgRingFd() {
  ProbeRing a, b;
  if (!a.ok || !b.ok) return false;
  if (io_uring_register_files_sparse(&a.ring, 2) != 0) return false;
  if (io_uring_register_files_sparse(&b.ring, 2) != 0) return false;
  SocketPair sp;
  int fd = sp.fd[0];
  if (io_uring_register_files_update(&a.ring, 0, &fd, 1) != 1) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(&a.ring);
  PrepMsgRingSendFd(sqe, b.ring.ring_fd, 0, 1, 0x1234);
  int res = -1;
  if (!a.RunOne(&res) || res < 0) return false;
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{1, 0};
  if (io_uring_wait_cqe_timeout(&b.ring, &cqe, &ts) != 0) return false;
  bool ok = cqe->user_data == 0x1234 && cqe->res >= 0;
  io_uring_cqe_seen(&b.ring, cqe);
  return ok;
}

}  // namespace

Features ProbeFeatures() {
  Features f;
  utsname u{};
  if (uname(&u) == 0) f.kernel_release = u.release;

  io_uring_params p{};
  {
    ProbeRing r(0, &p, &f.setup_errno);
    if (!r.ok) return f;  // no io_uring at all; MeetsFloor reports it
    f.ext_arg = p.features & IORING_FEAT_EXT_ARG;
    f.nodrop = p.features & IORING_FEAT_NODROP;
    f.cqe_skip = p.features & IORING_FEAT_CQE_SKIP;
    io_uring_probe* probe = io_uring_get_probe_ring(&r.ring);
    if (probe) {
      f.send_zc = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC);
      f.msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
      f.fixed_fd_install = probe->last_op >= kOpFixedFdInstall &&
                           (probe->ops[kOpFixedFdInstall].flags & IO_URING_OP_SUPPORTED);
      io_uring_free_probe(probe);
    }
    f.register_ring_fd = io_uring_register_ring_fd(&r.ring) == 1;
  }
  f.single_issuer = ProbeRing(IORING_SETUP_SINGLE_ISSUER).ok;
  f.defer_taskrun = ProbeRing(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN).ok;
  f.coop_taskrun = ProbeRing(IORING_SETUP_COOP_TASKRUN).ok;
  f.submit_all = ProbeRing(IORING_SETUP_SUBMIT_ALL).ok;

  {
    ProbeRing r;
    f.buf_ring = r.ok && BufferRing::Create(&r.ring, 1, 4, 256, false).ok();
    f.buf_ring_inc = r.ok && BufferRing::Create(&r.ring, 2, 4, 256, true).ok();
  }
  f.recv_multishot = f.buf_ring && TryRecvMultishot(false, false);
  f.recv_bundle = f.recv_multishot && TryRecvMultishot(true, false);
  // Multishot accept came with 5.19, before multishot recv; the probe above implies it.
  f.accept_multishot = f.recv_multishot;
  f.msg_ring_fd = f.msg_ring && TryMsgRingFd();
  f.msg_ring_cqe_skip = f.msg_ring_fd;  // CQE_SKIP for MSG_RING arrived with fd passing fixes (6.3)
  {
    ProbeRing r;
    if (r.ok) {
      // struct io_uring_napi { u32 busy_poll_to; u8 prefer_busy_poll; u8 pad[3]; u64 resv; }
      struct {
        uint32_t busy_poll_to;
        uint8_t prefer;
        uint8_t pad[3];
        uint64_t resv;
      } napi{};
      f.napi = io_uring_register(r.ring.ring_fd, kRegisterNapi, &napi, 1) == 0;
    }
  }
  return f;
}

uint32_t Features::WorkerSetupFlags() const {
  uint32_t flags = 0;
  if (single_issuer) flags |= IORING_SETUP_SINGLE_ISSUER;
  if (defer_taskrun) flags |= IORING_SETUP_DEFER_TASKRUN;
  else if (coop_taskrun) flags |= IORING_SETUP_COOP_TASKRUN;
  if (submit_all) flags |= IORING_SETUP_SUBMIT_ALL;
  return flags;
}

bool Features::MeetsFloor(std::string* missing) const {
  if (setup_errno != 0) {
    // EPERM: a seccomp profile (Docker 25+ blocks io_uring by default) or the sysctl
    // kernel.io_uring_disabled; ENOSYS: a kernel without io_uring.
    if (missing) {
      *missing = absl::StrCat("io_uring itself (io_uring_setup: ", strerror(setup_errno),
                              setup_errno == EPERM ? "; blocked by a seccomp profile or kernel.io_uring_disabled?" : "",
                              ")");
    }
    return false;
  }
  std::vector<const char*> miss;
  if (!ext_arg) miss.push_back("IORING_FEAT_EXT_ARG");
  if (!buf_ring) miss.push_back("provided buffer rings");
  if (!recv_multishot) miss.push_back("multishot recv");
  if (!msg_ring) miss.push_back("IORING_OP_MSG_RING");
  if (miss.empty()) return true;
  if (missing) {
    missing->clear();
    for (const char* m : miss) absl::StrAppend(missing, missing->empty() ? "" : ", ", m);
  }
  return false;
}

std::string Features::Describe() const {
  // Every field of Features appears, so that `-v` output answers "was X probed, and how?"
  // (nodrop, cqe_skip, accept_multishot and msg_ring_cqe_skip were missing).
  auto yn = [](bool b) { return b ? "yes" : "no"; };
  return absl::StrCat("io_uring features on kernel ", kernel_release, ": single_issuer=", yn(single_issuer),
                      " defer_taskrun=", yn(defer_taskrun), " coop_taskrun=", yn(coop_taskrun),
                      " submit_all=", yn(submit_all), " ext_arg=", yn(ext_arg), " nodrop=", yn(nodrop),
                      " cqe_skip=", yn(cqe_skip), " buf_ring=", yn(buf_ring), " recv_multishot=", yn(recv_multishot),
                      " accept_multishot=", yn(accept_multishot), " recv_bundle=", yn(recv_bundle),
                      " buf_ring_inc=", yn(buf_ring_inc), " send_zc=", yn(send_zc), " msg_ring=", yn(msg_ring),
                      " msg_ring_fd=", yn(msg_ring_fd), " msg_ring_cqe_skip=", yn(msg_ring_cqe_skip),
                      " fixed_fd_install=", yn(fixed_fd_install), " register_ring_fd=", yn(register_ring_fd),
                      " napi=", yn(napi));
}

}  // namespace rb::netio
