#include "core/error_exit.h"

#include <cstdlib>
#include <iostream>
#include <new>

#include "netquant/atomic_file.h"
#include "netquant/error.h"

namespace nq {

int report_error(std::exception_ptr e, std::ostream& err) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& x) {
    err << "error: " << x.what() << "\n";
    return exit_status_for(x.code());
  } catch (const std::bad_alloc&) {
    err << "error: out of memory (an allocation was refused: the job needs more memory than this process may "
           "use)\n";
    return exit_status_for(ErrorCode::kOutOfMemory);
  } catch (const std::exception& x) {
    err << "error: internal error (please report): " << x.what() << "\n";
    return exit_status_for(ErrorCode::kInternal);
  } catch (...) {
    err << "error: internal error (please report): an exception of unknown type\n";
    return exit_status_for(ErrorCode::kInternal);
  }
}

void exit_on_uncaught_exception() {
  remove_open_temporaries();  // first: reporting may fail where memory has run out
  const std::exception_ptr e = std::current_exception();
  int status = exit_status_for(ErrorCode::kInternal);
  if (e)
    status = report_error(e, std::cerr);
  else
    std::cerr << "error: internal error (please report): std::terminate without an exception\n";
  std::cerr.flush();
  std::_Exit(status);  // other threads may still run: no static destructors under them
}

}  // namespace nq
