/*
 * one_shot_token.so: serve each protected environment variable once per process (ARCHITECTURE 5.4).
 *
 * Preloaded (LD_PRELOAD) into the agent's whole process tree, it interposes getenv() and
 * secure_getenv(). For a protected name, the first call in a process
 *   1. copies the value into a private heap copy (the cache),
 *   2. zeroes the value's bytes where they lie in the kernel's environment block, the memory that
 *      /proc/<pid>/environ shows, and
 *   3. unsetenv()s the name, so programs exec'd later do not inherit it;
 * later calls return the cached copy. A name that is not set is cached as absent (NULL).
 *
 * Protected names: the built-in list below plus the comma-separated AWF_ONE_SHOT_TOKENS, read once.
 * Other names pass straight to libc. The library never prints anything; if something goes wrong
 * with a protected name it fails closed (NULL), never open.
 *
 * A speed bump, not a boundary: static binaries, Go, and anything reading `environ` directly
 * (bash, Python's os.environ) never call getenv(). The boundary is not forwarding the secret.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

extern char **environ;

typedef char *(*getenv_fn)(const char *);

static const char *const DEFAULT_NAMES[] = {
    "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT", "GITHUB_PERSONAL_ACCESS_TOKEN", "GITHUB_API_TOKEN",
    "GH_ACCESS_TOKEN", "COPILOT_GITHUB_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN", "GEMINI_API_KEY", NULL,
};

/* One cache entry per protected name asked for; one allocation holds node, name and value. */
struct entry {
    struct entry *next;
    char *value; /* NULL: the name was absent (or could not be served safely) */
    char name[];
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *cache; /* guarded by cache_lock */

static pthread_once_t names_once = PTHREAD_ONCE_INIT;
static char names_copy[4096];   /* private copy of AWF_ONE_SHOT_TOKENS, when it fits */
static const char *extra_names; /* names_copy, or the live value if too long; NULL if unset */

static getenv_fn real_getenv, real_secure_getenv; /* resolved lazily, atomically */

/* libc's own functions. dlsym() might call getenv() itself (through malloc, say): the guard
 * stops that recursion, and until resolved we scan environ as glibc's getenv() does. */
static void resolve(void)
{
    static __thread int resolving;
    if (resolving)
        return;
    resolving = 1;
    if (!__atomic_load_n(&real_getenv, __ATOMIC_ACQUIRE))
        __atomic_store_n(&real_getenv, (getenv_fn)dlsym(RTLD_NEXT, "getenv"), __ATOMIC_RELEASE);
    if (!__atomic_load_n(&real_secure_getenv, __ATOMIC_ACQUIRE))
        __atomic_store_n(&real_secure_getenv, (getenv_fn)dlsym(RTLD_NEXT, "secure_getenv"),
                         __ATOMIC_RELEASE);
    resolving = 0;
}

__attribute__((constructor)) static void early_resolve(void) { resolve(); }

static char *scan_environ(const char *name)
{
    size_t len = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}

static char *libc_getenv(const char *name)
{
    getenv_fn fn = __atomic_load_n(&real_getenv, __ATOMIC_ACQUIRE);
    if (!fn) {
        resolve();
        fn = __atomic_load_n(&real_getenv, __ATOMIC_ACQUIRE);
    }
    return fn ? fn(name) : scan_environ(name);
}

static int is_secure(void) { return getauxval(AT_SECURE) != 0; } /* setuid, setgid, caps */

/* Read AWF_ONE_SHOT_TOKENS once, calling neither malloc nor dlsym: either may call getenv(),
 * which would re-enter this pthread_once and deadlock. */
static void load_names(void)
{
    const char *list = scan_environ("AWF_ONE_SHOT_TOKENS");
    if (list && strlen(list) < sizeof names_copy) {
        strcpy(names_copy, list);
        list = names_copy;
    }
    extra_names = list;
}

static int in_list(const char *name, size_t len, const char *list)
{
    while (list && *list) {
        const char *end = strchr(list, ',');
        size_t n = end ? (size_t)(end - list) : strlen(list);
        const char *item = list;
        while (n && (*item == ' ' || *item == '\t'))
            item++, n--;
        while (n && (item[n - 1] == ' ' || item[n - 1] == '\t'))
            n--;
        if (n == len && memcmp(item, name, len) == 0)
            return 1;
        list = end ? end + 1 : NULL;
    }
    return 0;
}

static int is_protected(const char *name)
{
    if (!name || !*name || strchr(name, '='))
        return 0;
    for (const char *const *d = DEFAULT_NAMES; *d; d++)
        if (strcmp(*d, name) == 0)
            return 1;
    pthread_once(&names_once, load_names);
    return in_list(name, strlen(name), extra_names);
}

/* The kernel's environment block [env_start, env_end): fields 50 and 51 of /proc/self/stat. */
static int env_block(unsigned long *start, unsigned long *end)
{
    char buf[2048];
    size_t got = 0;
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    for (ssize_t n; got < sizeof buf - 1; got += (size_t)n)
        if ((n = read(fd, buf + got, sizeof buf - 1 - got)) <= 0)
            break;
    close(fd);
    buf[got] = '\0';
    char *p = strrchr(buf, ')'); /* field 2, the command name, may hold spaces and parentheses */
    for (int field = 2; p && field < 50; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return -1;
    char *after;
    *start = strtoul(p + 1, &after, 10);
    *end = strtoul(after, &after, 10);
    return *start && *end > *start ? 0 : -1;
}

/* Zero the value bytes of every NAME=... entry inside the environment block. Strings elsewhere
 * (setenv's heap copies, putenv's arguments, possibly read-only) are not in /proc/<pid>/environ
 * and are left alone; unsetenv() drops them. Returns -1 if the block cannot be found. */
static int scrub(const char *name, size_t len)
{
    unsigned long start, end;
    if (env_block(&start, &end) != 0)
        return -1;
    for (char **e = environ; e && *e; e++) {
        unsigned long at = (unsigned long)*e;
        if (at < start || at >= end || strncmp(*e, name, len) != 0 || (*e)[len] != '=')
            continue;
        volatile char *v = *e + len + 1; /* volatile: the stores must not be optimised away */
        while (*v)
            *v++ = '\0';
    }
    return 0;
}

/* The cached value of a protected name, consuming it from the environment on first use. */
static char *one_shot(const char *name)
{
    size_t len = strlen(name);
    char *result = NULL;
    pthread_mutex_lock(&cache_lock);
    struct entry *e = cache;
    while (e && strcmp(e->name, name) != 0)
        e = e->next;
    if (e) {
        result = e->value;
    } else {
        const char *value = libc_getenv(name);
        size_t vlen = value ? strlen(value) + 1 : 0;
        e = malloc(sizeof *e + len + 1 + vlen);
        if (e) {
            memcpy(e->name, name, len + 1);
            e->value = value ? memcpy(e->name + len + 1, value, vlen) : NULL;
        }
        /* Fail closed: if the copy or the scrub failed, the name stays absent for good. */
        if (value && scrub(name, len) != 0 && e && e->value) {
            memset(e->value, 0, vlen);
            e->value = NULL;
        }
        if (value)
            unsetenv(name);
        if (e) {
            e->next = cache;
            cache = e;
            result = e->value;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return result;
}

EXPORT char *getenv(const char *name)
{
    return is_protected(name) ? one_shot(name) : libc_getenv(name);
}

EXPORT char *secure_getenv(const char *name)
{
    if (is_protected(name)) {
        char *value = one_shot(name); /* consumed even when not served: children never see it */
        return is_secure() ? NULL : value;
    }
    getenv_fn fn = __atomic_load_n(&real_secure_getenv, __ATOMIC_ACQUIRE);
    if (!fn) {
        resolve();
        fn = __atomic_load_n(&real_secure_getenv, __ATOMIC_ACQUIRE);
    }
    return fn ? fn(name) : is_secure() ? NULL : libc_getenv(name);
}
