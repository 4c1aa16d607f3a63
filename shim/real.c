/* real.c: the table of libc's own functions behind the hooks (see real.h). */
#include "shim/real.h"

#include <dlfcn.h>

#include "common/log.h"

struct real_fns real_fns;

void *real_lookup(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f)
        log_at(LOG_ERROR, "libc has no %s", name);
    return f;
}
