/* The library's one init: registers the upper layers with the dispatcher in a fixed order
 * (the tape, the tracer, then DTR). The layers below need no init. */
#include <pthread.h>
#include <stdio.h>

#include "graph/trace_impl.h"
#include "imperative/dtr.h"
#include "imperative/tape.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static ty_status init_status;
static char init_message[256];

static void
init_once(void)
{
    init_status = ty_tape_init();
    if (init_status == TY_OK) {
        init_status = ty_trace_init();
    }
    if (init_status == TY_OK) {
        init_status = ty_dtr_init();
    }
    if (init_status != TY_OK) {
        snprintf(init_message, sizeof init_message, "%s", ty_last_error());
    }
}

ty_status
ty_init(void)
{
    pthread_once(&once, init_once);
    return init_status == TY_OK ? TY_OK : ty_set_error(init_status, "init: %s", init_message);
}
