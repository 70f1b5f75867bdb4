#include "CFleetSys.h"

#include <errno.h>
#include <fts.h>
#include <unistd.h>

int pgf_chown_tree(const char *path, uid_t uid, gid_t gid) {
    char *const roots[] = { (char *)path, NULL };
    /* FTS_PHYSICAL: links are changed themselves, never followed; FTS_NOSTAT is not used, so
       directories are told apart from files without a second stat. */
    FTS *fts = fts_open(roots, FTS_PHYSICAL | FTS_NOCHDIR, NULL);
    if (!fts) return errno;
    int result = 0;
    FTSENT *entry;
    while ((entry = fts_read(fts)) != NULL) {
        switch (entry->fts_info) {
        case FTS_DP:
            continue; /* a directory again, after its contents: done at FTS_D */
        case FTS_DNR:
        case FTS_ERR:
        case FTS_NS:
            result = entry->fts_errno ? entry->fts_errno : EIO;
            goto done;
        default:
            if (lchown(entry->fts_accpath, uid, gid) != 0) {
                result = errno;
                goto done;
            }
        }
    }
    if (errno != 0 && result == 0) result = errno;
done:
    fts_close(fts);
    return result;
}
