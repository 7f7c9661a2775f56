# A fixture we wrote ourselves: a stand-in for the parts of Homebrew's Formula DSL that
# packaging/homebrew/m4watch.rb uses, so its install, service and test blocks run here
# without Homebrew. Files are moved by `install`, as Homebrew does; `cargo install`
# is the one step replaced: it puts the given, already built binary into bin/.
#
# usage: ruby brew_formula.rb FORMULA SOURCE_DIR PREFIX BINARY VERSION
#   runs `install` in SOURCE_DIR (an extracted source archive) into PREFIX, prints the
#   service block as one JSON line (`service: {...}`), then runs `test do` in a
#   temporary directory and prints `test do: ok`. Exits non-zero on any failure.
require "fileutils"
require "json"
require "pathname"
require "tmpdir"

class Pathname
  # Homebrew's Pathname#install: moves each file or directory into self, optionally
  # renamed ({ "from" => "to" }).
  def install(*sources)
    mkpath
    sources.each do |s|
      pairs = s.is_a?(Hash) ? s : { s => File.basename(s.to_s) }
      pairs.each do |from, to|
        raise "install: #{from} does not exist in #{Dir.pwd}" unless File.exist?(from.to_s)

        FileUtils.mv(from.to_s, (self / to.to_s).to_s)
      end
    end
  end
end

class Formula
  include FileUtils

  class << self
    attr_reader :service_block, :test_block

    %i[desc homepage url sha256 license head version depends_on].each do |m|
      define_method(m) { |*_args| nil }
    end

    def service(&block)
      @service_block = block
    end

    def test(&block)
      @test_block = block
    end
  end

  attr_reader :prefix, :version

  def initialize(prefix, binary, version)
    @prefix = Pathname.new(prefix)
    @binary = binary
    @version = version
  end

  def bin = prefix / "bin"
  def opt_bin = bin
  def etc = prefix / "etc"
  def var = prefix / "var"
  def pkgshare = prefix / "share" / "m4watch"
  def opt_pkgshare = pkgshare
  def std_cargo_args = ["--locked", "--root", prefix.to_s, "--path", "."]

  def system(cmd, *args)
    if cmd.to_s == "cargo"
      raise "cargo #{args.join(' ')}: not `cargo install`" unless args.first == "install"

      bin.mkpath
      FileUtils.cp(@binary, (bin / "m4watch").to_s)
      return true
    end
    ok = Kernel.system(cmd.to_s, *args.map(&:to_s))
    raise "failed: #{cmd} #{args.join(' ')}" unless ok

    true
  end

  def shell_output(cmd, status = 0)
    out = `#{cmd}`
    raise "`#{cmd}` exited #{$?.exitstatus}, not #{status}" unless $?.exitstatus == status

    out
  end

  def assert_match(expected, actual)
    ok = expected.is_a?(Regexp) ? expected.match?(actual) : actual.include?(expected.to_s)
    raise "assert_match: #{expected.inspect} not in #{actual.inspect}" unless ok
  end
end

# The service block's DSL: each setting recorded; formula methods reachable.
class Service
  attr_reader :settings

  def initialize(formula)
    @formula = formula
    @settings = {}
  end

  %i[run keep_alive working_dir log_path error_log_path process_type environment_variables
     require_root run_type].each do |m|
    define_method(m) { |value = nil| @settings[m] = value }
  end

  def method_missing(name, *args, &block)
    @formula.respond_to?(name) ? @formula.public_send(name, *args, &block) : super
  end

  def respond_to_missing?(name, include_private = false)
    @formula.respond_to?(name) || super
  end
end

formula_file, source_dir, prefix, binary, version = ARGV
raise "usage: brew_formula.rb FORMULA SOURCE_DIR PREFIX BINARY VERSION" unless version

before = Formula.subclasses
load File.expand_path(formula_file)
klass = (Formula.subclasses - before).first or raise "#{formula_file} defines no formula"
f = klass.new(prefix, binary, version)
Dir.chdir(source_dir) { f.install }
service = Service.new(f)
service.instance_exec(&klass.service_block)
puts "service: #{JSON.generate(service.settings.transform_values { |v| v.is_a?(Array) ? v.map(&:to_s) : v.to_s })}"
Dir.mktmpdir { |t| Dir.chdir(t) { f.instance_exec(&klass.test_block) } }
puts "test do: ok"
