// Internal: how a program that runs netquant ends on an error (the CLI's main, and its std::terminate handler):
// one `error:` line on stderr and the README's exit status (2 bad input or usage, 3 unsupported, unavailable or out
// of memory, 1 a bug).
#pragma once

#include <exception>
#include <ostream>

namespace nq {

// Writes the `error:` line for `e` to `err` and returns the exit status.
int report_error(std::exception_ptr e, std::ostream& err);

// A std::terminate handler for programs: an exception that could not be caught on its way to main (thrown inside
// an OpenMP region, whose runtime terminates) still ends the run as main would have, after removing the open
// output temporaries. Without an exception it reports an internal error.
[[noreturn]] void exit_on_uncaught_exception();

}  // namespace nq
