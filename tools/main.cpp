// `netquant` CLI entry: builds the subcommands from the registry, runs one, maps errors to exit statuses.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <exception>
#include <iostream>

#include "cli_common.h"
#include "command_registry.h"
#include "core/error_exit.h"
#include "netquant/backend.h"
#include "netquant/error.h"
#include "nn/blas_kernels.h"

namespace nq::cli {
std::vector<CommandInfo>& command_registry() {
  static std::vector<CommandInfo> registry;
  return registry;
}
}  // namespace nq::cli

int main(int argc, char** argv) {
  // Before anything else runs: on a CPU that OpenBLAS does not know, start again with the kernels it can run.
  nq::nn::cpu::restart_with_better_blas_kernels(argv);
  // An exception that cannot reach the catch below (one thrown inside an OpenMP region) still ends the run with
  // its error line and status, and without the outputs' temporaries.
  std::set_terminate(nq::exit_on_uncaught_exception);
  CLI::App app{"netquant " NQ_VERSION
               " - compress neural-network weights by importance-weighted scalar quantization and Huffman coding"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("netquant ") + NQ_VERSION + (NQ_HAVE_CUDA ? " (CUDA)" : " (CPU only)"));
  app.footer("Run `netquant COMMAND --help` for a command's options.");

  auto& registry = nq::cli::command_registry();
  std::stable_sort(registry.begin(), registry.end(),
                   [](const auto& a, const auto& b) { return a.order < b.order; });
  try {
    for (auto& cmd : registry) {
      CLI::App* sub = app.add_subcommand(cmd.name, cmd.summary);
      cmd.setup(*sub);
    }
    nq::cli::read_integers_in_decimal(app);
    // An unknown first word would reach CLI11 as a stray positional ("A subcommand is required"): name it.
    const auto known = [&](const std::string& word) {
      for (const auto& cmd : registry)
        if (word == cmd.name) return true;
      return false;
    };
    if (argc >= 2 && argv[1][0] != '-' && !known(argv[1])) {
      std::cerr << "error: unknown command '" << argv[1] << "'; `netquant --help` lists the commands\n";
      return 2;
    }
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Usage errors exit 2 (like bad input), with CLI11's message on stderr.
    std::cerr << "error: " << e.what() << "\n";
    if (e.get_exit_code() != 0) std::cerr << "Run with --help for usage.\n";
    return e.get_exit_code() == 0 ? 0 : 2;
  } catch (...) {
    return nq::report_error(std::current_exception(), std::cerr);
  }
  return 0;
}
