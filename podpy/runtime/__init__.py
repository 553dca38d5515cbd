"""The container runtime layer: the built-in OCI runtime, external runtimes, and their helpers.

Public API (import the submodule you need; this package imports nothing):
  oci.get_runtime(name=None, root=None) -> OCIRuntime   "podpy" (built-in), "runc", "crun" or a path
  builtin.BuiltinRuntime(root).create(bundle, cid, pid_file=, console_socket=, stdio=(in, out, err),
      preserve_fds=) -> init pid;  .start(cid);  .state(cid) -> OCI state dict;  .kill(cid, sig,
      all_processes=);  .delete(cid, force=);  .list();  .run(bundle, cid, ...) -> exit code;
      .pause(cid, paused);  .stats(cid) -> cgroup counters
  builtin.default_root()                        $XDG_RUNTIME_DIR/podpy-oci (rootless) or /run/podpy-oci
  seccomp.default_profile() / load_profile(path) / resolve_profile(profile, caps) / compile_filter()
  caps.effective_set(cap_add, cap_drop, privileged), caps.DEFAULT_CAPABILITIES
  users.resolve_user(rootfs, "name|uid[:group|gid]") -> ResolvedUser
  mounts.mount_overlay(lower, upper, work, target), mounts.secure_join(root, path)
  cgroups.mode(), cgroups.can_manage(rootless), cgroups.ROOTLESS_V1_WARNING
Spec generation lives in podpy.spec.generate (RunOptions + generate + write_bundle).
"""
