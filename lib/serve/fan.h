/* SPDX-License-Identifier: Apache-2.0 */
/* fanotify pre-content events: what Debian 12's headers do not have yet. */
#ifndef ANOLE_FAN_H
#define ANOLE_FAN_H

#include <stdint.h>
#include <sys/fanotify.h>

#ifndef FAN_PRE_ACCESS
#define FAN_PRE_ACCESS 0x00100000
#endif
#ifndef FAN_EVENT_INFO_TYPE_RANGE
#define FAN_EVENT_INFO_TYPE_RANGE 6
#endif
/* A denial with the errno the reader gets (pre-content groups only). */
#define FAN_DENY_WITH(err) (FAN_DENY | ((uint32_t)(err) << 24))

struct fan_range_info {
	struct fanotify_event_info_header hdr;
	uint32_t pad;
	uint64_t offset;
	uint64_t count;
};

#endif
