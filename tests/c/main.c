#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tianyuan/tianyuan.h"

enum { MAX_TESTS = 1024 };
static struct {
    const char *name;
    ty_test_fn fn;
} tests[MAX_TESTS];
static int ntests;

void
ty_test_register(const char *name, ty_test_fn fn)
{
    if (ntests < MAX_TESTS) {
        tests[ntests].name = name;
        tests[ntests].fn = fn;
        ntests++;
    }
}

/* Usage: ty_ctest [substring]  runs the tests whose name contains substring. */
int
main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    if (ty_init() != TY_OK) {
        fprintf(stderr, "ty_init failed: %s\n", ty_last_error());
        return 1;
    }
    for (int i = 0; i < ntests; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1])) {
            continue;
        }
        int failures = 0;
        tests[i].fn(&failures);
        printf("%-48s %s\n", tests[i].name, failures ? "FAIL" : "ok");
        if (failures) {
            failed++;
        } else {
            passed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
