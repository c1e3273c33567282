// Internal: the read-only file mappings of this process's inputs (io::MappedFile registers each one), so that a
// run streaming a model larger than memory can give back the pages of the values it has read. Its RSS then shows
// what it holds, not every input page it has passed over (batch schedulers that kill jobs by RSS count mapped
// pages). A page given back is read again from the file if touched again, so releasing is always safe.
#pragma once

#include <cstddef>

namespace nq {

void register_readonly_mapping(const void* begin, size_t bytes);
void unregister_readonly_mapping(const void* begin);

// Drops this process's copy of the pages overlapping [data, data + bytes) when the range lies in a registered
// mapping (the page cache keeps them); does nothing for any other memory.
void release_mapped_pages(const void* data, size_t bytes);

}  // namespace nq
