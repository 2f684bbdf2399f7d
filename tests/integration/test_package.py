"""test_package.py - the Debian package as an operator meets it: built with
CPack from the build directory under test, installed with dpkg -i on this
machine, its programs run from /usr/bin (a storaged started by hand, a round
trip through the installed CLI), its units checked by systemd-analyze
(verify, and a security exposure under 4), its man pages and completion
present, then removed and purged: the programs go, the data directory and
the user stay. Needs root (CI runs as root); the package is always removed
at the end, also when the test fails."""
import glob
import os
import re
import shutil
import subprocess
import unittest

from harness import BUILD, TempDirTest, free_port, Daemon

UNITS = ["ca-cas-balancerd.service", "ca-cas-storaged@.service"]


def run(*argv, check=True, env=None, timeout=300):
    p = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


class DebianPackage(TempDirTest):
    def setUp(self):
        super().setUp()
        self.assertEqual(os.geteuid(), 0, "installing the package needs root (CI runs as root)")
        for tool in ("cpack", "dpkg", "systemd-analyze"):
            self.assertTrue(shutil.which(tool), f"{tool} missing (scripts/install-deps.sh)")
        # a package left by an earlier, killed run
        run("dpkg", "--purge", "ca-cas", check=False)

    def test_build_install_run_remove(self):
        out = os.path.join(self.tmp, "pkg")
        run("cpack", "-G", "DEB", "-B", out, "--config",
            os.path.join(BUILD, "CPackConfig.cmake"))
        debs = glob.glob(os.path.join(out, "ca-cas_*.deb"))
        self.assertEqual(len(debs), 1, os.listdir(out))
        deb = debs[0]
        info = run("dpkg-deb", "-f", deb, "Depends").stdout
        for lib in ("libmicrohttpd", "libcurl", "libyaml", "libssl", "libarchive"):
            self.assertIn(lib, info)
        files = run("dpkg-deb", "-c", deb).stdout
        for f in ("./usr/bin/ca-cas", "./usr/bin/ca-cas-storaged", "./usr/bin/ca-cas-balancerd",
                  "./usr/lib/systemd/system/ca-cas-storaged@.service",
                  "./usr/lib/systemd/system/ca-cas-balancerd.service",
                  "./usr/share/man/man1/ca-cas.1", "./usr/share/man/man8/ca-cas-storaged.8",
                  "./usr/share/man/man8/ca-cas-balancerd.8",
                  "./usr/share/bash-completion/completions/ca-cas",
                  "./usr/share/doc/ca-cas/API.md"):
            self.assertIn(f, files)

        self.addCleanup(run, "dpkg", "--purge", "ca-cas", check=False)
        run("dpkg", "-i", deb)
        self.assertEqual(run("getent", "passwd", "ca-cas").returncode, 0)
        self.assertTrue(os.path.isdir("/srv/ca-cas"))
        # installed, not started: no unit is enabled
        for u in UNITS:
            self.assertFalse(os.path.exists(f"/etc/systemd/system/multi-user.target.wants/{u}"))

        env = dict(os.environ)
        for prog in ("ca-cas", "ca-cas-storaged", "ca-cas-balancerd"):
            v = run(f"/usr/bin/{prog}", "--version", env=env).stdout
            self.assertRegex(v, rf"^{prog} \d+\.\d+\.\d+")
        # the installed storaged and CLI work together
        port = free_port()
        sd = Daemon(["/usr/bin/ca-cas-storaged", "--dir", os.path.join(self.tmp, "store"),
                     "--listen", f"127.0.0.1:{port}", "--scrub-rate", "0"],
                    os.path.join(self.tmp, "storaged.log"))
        self.daemons.append(sd)
        sd.start(("127.0.0.1", port))
        src = os.path.join(self.tmp, "obj")
        with open(src, "wb") as f:
            f.write(os.urandom(100_000))
        key = run("/usr/bin/ca-cas", "--server", f"127.0.0.1:{port}", "put", src).stdout.strip()
        got = os.path.join(self.tmp, "got")
        run("/usr/bin/ca-cas", "--server", f"127.0.0.1:{port}", "get", key, "-o", got)
        with open(src, "rb") as a, open(got, "rb") as b:
            self.assertEqual(a.read(), b.read())
        self.assertEqual(sd.stop(), 0)

        # the units: valid, and sandboxed (exposure under 4, "OK")
        unitdir = os.path.join(self.tmp, "units")
        os.mkdir(unitdir)
        for u in UNITS:
            text = open(f"/usr/lib/systemd/system/{u}").read()
            self.assertIn("ExecStart=/usr/bin/", text)
            name = u.replace("@.", "@disk1.")  # an instance of the template
            shutil.copy(f"/usr/lib/systemd/system/{u}", os.path.join(unitdir, name))
            p = run("systemd-analyze", "verify", os.path.join(unitdir, name), check=False)
            problems = [l for l in (p.stdout + p.stderr).splitlines()
                        if name in l and "RequiresMountsFor" not in l]
            self.assertEqual(problems, [], p.stdout + p.stderr)
            p = run("systemd-analyze", "security", "--offline=true", os.path.join(unitdir, name),
                    check=False)
            m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", p.stdout + p.stderr)
            self.assertTrue(m, p.stdout + p.stderr)
            self.assertLess(float(m.group(1)), 4.0, f"{u}: {m.group(0)}")
        # man pages render, completion loads
        for page in ("/usr/share/man/man1/ca-cas.1", "/usr/share/man/man8/ca-cas-storaged.8"):
            p = run("man", "-l", page, check=False, env=dict(env, MANWIDTH="80", MANPAGER="cat"))
            if p.returncode == 0:  # man-db may be absent on a minimal machine
                self.assertIn("--help", p.stdout)
            with open(page) as f:
                self.assertIn(".TH", f.read())
        p = run("bash", "-c", "source /usr/share/bash-completion/completions/ca-cas && "
                "COMP_WORDS=(ca-cas ex) COMP_CWORD=1 && _ca_cas && echo ${COMPREPLY[@]}")
        self.assertIn("export", p.stdout)
        p = run("bash", "-c", "source /usr/share/bash-completion/completions/ca-cas && "
                "COMP_WORDS=(ca-cas get --con) COMP_CWORD=2 && _ca_cas && echo ${COMPREPLY[@]}")
        self.assertIn("--continue", p.stdout)

        # removal: programs go; data, configuration and the user stay
        marker = "/srv/ca-cas/keep-me"
        open(marker, "w").close()
        self.addCleanup(lambda: os.path.exists(marker) and os.unlink(marker))
        run("dpkg", "--purge", "ca-cas")
        for prog in ("ca-cas", "ca-cas-storaged", "ca-cas-balancerd"):
            self.assertFalse(os.path.exists(f"/usr/bin/{prog}"))
        self.assertTrue(os.path.exists(marker))
        self.assertEqual(run("getent", "passwd", "ca-cas").returncode, 0)


if __name__ == "__main__":
    unittest.main()
