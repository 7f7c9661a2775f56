# Homebrew formula for m4watch: builds the release source archive with Rust, so the
# trading Mac needs no toolchain of its own beyond what Homebrew installs for the build.
# scripts/release.sh prints the archive's name and SHA-256 for `url` and `sha256`;
# copy this file into a tap (`brew tap-new desk/m4watch`) with those filled in.
class M4watch < Formula
  desc "Monitoring sidecar for Apple M4 Max trading hosts"
  homepage "https://github.com/m4watch/m4watch"
  url "https://github.com/m4watch/m4watch/releases/download/v0.1.0/m4watch-0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license "Apache-2.0"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args
    # `install` moves files, so etc gets a copy. Homebrew keeps an edited etc file on
    # upgrade (the new one lands beside it as .default).
    cp "m4watch.example.yml", "m4watch.yml"
    (etc/"m4watch").install "m4watch.yml"
    pkgshare.install "m4watch.example.yml", "grafana-dashboards", "alert-rules", "prometheus"
    pkgshare.install "packaging/macos"
    (var/"m4watch").mkpath
    (var/"log").mkpath
  end

  def caveats
    <<~EOS
      `brew services start m4watch` runs m4watch while you are logged in.
      On an unattended Mac (reboots without a login), install the boot-time daemon
      instead, running as your user, with its log rotated by newsyslog:
        sudo #{opt_bin}/m4watch install-launchd --system --config.file #{etc}/m4watch/m4watch.yml
      It logs to /Library/Logs/m4watch/m4watch.log. Dashboards: #{opt_pkgshare}/grafana-dashboards
    EOS
  end

  service do
    run [opt_bin/"m4watch", "--config.file", etc/"m4watch/m4watch.yml",
         "--log.file", var/"log/m4watch.log"]
    keep_alive true
    working_dir var/"m4watch"
    log_path var/"log/m4watch.log"
    error_log_path var/"log/m4watch.log"
    process_type :standard
  end

  test do
    system bin/"m4watch", "check-config", pkgshare/"m4watch.example.yml"
    assert_match version.to_s, shell_output("#{bin}/m4watch --version")
  end
end
