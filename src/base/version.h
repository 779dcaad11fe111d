/* base/version.h: the one version string of every kiln command and API (/version,
 * --version, the hub's User-Agent). */
#ifndef KILN_BASE_VERSION_H
#define KILN_BASE_VERSION_H
#define KILN_VERSION "0.1.0"
#endif
