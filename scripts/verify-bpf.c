// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Loads every program of one BPF object, one program at a time, into the
 * running kernel (so through its verifier), with the object's `const
 * volatile` settings set as given, and prints one line per program:
 *
 *   verify-bpf OBJECT [VARIANT-NAME] [NAME=VALUE ...]
 *   OK   sockops.bpf.o sockaccel_sockops [mesh] (5012 insns)
 *   FAIL sockops.bpf.o sockaccel_sockops [mesh]: Permission denied
 *        ... the verifier log's last lines ...
 *
 * The settings matter: the verifier prunes branches on frozen read-only
 * data, so a program is only checked whole when each setting that gates a
 * branch has been both off and on. Exit status: 0 if every program loaded.
 * Built and run by scripts/verify-bpf.sh; needs root (CAP_BPF, CAP_PERFMON).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#define LOG_SIZE (16u << 20)

static char *verifier_log;
static int quiet_libbpf = 1;

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (quiet_libbpf && level != LIBBPF_WARN)
		return 0;
	/* The verifier log is printed from our own buffer below, and the
	 * failure itself on our FAIL line. */
	if (quiet_libbpf && (strstr(fmt, "PROG LOAD LOG") || strstr(fmt, "BPF program load failed") ||
			     strstr(fmt, "failed to load")))
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* Sets `name` in the object's .rodata to `value` (1, 2, 4 or 8 bytes). */
static int set_rodata(struct bpf_object *obj, const char *name, unsigned long long value)
{
	struct btf *btf = bpf_object__btf(obj);
	struct bpf_map *map, *rodata = NULL;
	const struct btf_var_secinfo *vsi;
	const struct btf_type *sec;
	size_t size;
	char *data;
	int id, i;

	bpf_object__for_each_map(map, obj) {
		const char *n = bpf_map__name(map);
		size_t len = strlen(n);

		if (bpf_map__is_internal(map) && len >= 7 && strcmp(n + len - 7, ".rodata") == 0)
			rodata = map;
	}
	if (!btf || !rodata)
		return -ENOENT;
	id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (id < 0)
		return -ENOENT;
	sec = btf__type_by_id(btf, id);
	/* const in libbpf 1.1; writable until load (it is what libbpf loads) */
	data = (char *)bpf_map__initial_value(rodata, &size);
	if (!data)
		return -ENOENT;
	vsi = btf_var_secinfos(sec);
	for (i = 0; i < btf_vlen(sec); i++, vsi++) {
		const struct btf_type *var = btf__type_by_id(btf, vsi->type);

		if (strcmp(btf__name_by_offset(btf, var->name_off), name) != 0)
			continue;
		if (vsi->offset + vsi->size > size)
			return -ERANGE;
		switch (vsi->size) {
		case 1: *(__u8 *)(data + vsi->offset) = value; break;
		case 2: *(__u16 *)(data + vsi->offset) = value; break;
		case 4: *(__u32 *)(data + vsi->offset) = value; break;
		case 8: *(__u64 *)(data + vsi->offset) = value; break;
		default: return -EINVAL;
		}
		return 0;
	}
	return -ENOENT;
}

/* The last `lines` lines of the log (the verifier's verdict is at its end). */
static void print_log_tail(const char *log, int lines)
{
	const char *p = log + strlen(log);

	while (p > log && lines > 0) {
		p--;
		if (*p == '\n' && p[1] != '\0')
			lines--;
	}
	if (p > log)
		p++;
	fprintf(stdout, "%s%s", p, (*p && p[strlen(p) - 1] != '\n') ? "\n" : "");
}

/*
 * Log level 4 (statistics only) first: a full log (level 1) can outgrow any
 * buffer on a big program, and before 6.4 a full buffer fails the load. A
 * failure is loaded again at level 1 for the lines leading to the verdict.
 */
static int load_one(const char *path, const char *base, const char *variant, const char *only,
		    int nsets, char **sets, int log_level)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .kernel_log_buf = verifier_log, .kernel_log_size = LOG_SIZE,
		    .kernel_log_level = log_level);
	struct bpf_program *prog;
	struct bpf_object *obj;
	int err, i;

	verifier_log[0] = '\0';
	obj = bpf_object__open_file(path, &opts);
	if (!obj) {
		printf("FAIL %s: open: %s\n", base, strerror(errno));
		return 1;
	}
	for (i = 0; i < nsets; i++) {
		char name[128];
		const char *eq = strchr(sets[i], '=');

		if (!eq || (size_t)(eq - sets[i]) >= sizeof(name)) {
			fprintf(stderr, "verify-bpf: bad setting %s (NAME=VALUE)\n", sets[i]);
			exit(2);
		}
		memcpy(name, sets[i], eq - sets[i]);
		name[eq - sets[i]] = '\0';
		err = set_rodata(obj, name, strtoull(eq + 1, NULL, 0));
		if (err) {
			fprintf(stderr, "verify-bpf: %s has no setting %s (%s)\n", base, name, strerror(-err));
			exit(2);
		}
	}
	bpf_object__for_each_program(prog, obj)
		bpf_program__set_autoload(prog, strcmp(bpf_program__name(prog), only) == 0);
	err = bpf_object__load(obj);
	prog = bpf_object__find_program_by_name(obj, only);
	if (err && log_level != 1) {
		bpf_object__close(obj);
		return load_one(path, base, variant, only, nsets, sets, 1);
	}
	if (err) {
		printf("FAIL %s %s [%s]: %s\n", base, only, variant, strerror(-err));
		if (verifier_log[0])
			print_log_tail(verifier_log, 40);
		bpf_object__close(obj);
		return 1;
	}
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		unsigned int insns = 0;

		if (!bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			insns = info.xlated_prog_len / 8;
		/* "processed N insns" from the verifier's statistics line. */
		const char *stats = strstr(verifier_log, "processed ");
		int processed = stats ? atoi(stats + 10) : -1;

		printf("OK   %s %s [%s] (%u insns, %d processed)\n", base, only, variant, insns, processed);
	}
	bpf_object__close(obj);
	return 0;
}

int main(int argc, char **argv)
{
	const char *path, *base, *variant = "default";
	struct bpf_program *prog;
	struct bpf_object *obj;
	char *names[64];
	int nnames = 0, failed = 0, first_set = 2, i;

	if (argc < 2) {
		fprintf(stderr, "usage: verify-bpf OBJECT [VARIANT] [NAME=VALUE ...]\n");
		return 2;
	}
	path = argv[1];
	base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	if (argc > 2 && !strchr(argv[2], '=')) {
		variant = argv[2];
		first_set = 3;
	}
	if (getenv("VERIFY_BPF_DEBUG"))
		quiet_libbpf = 0;
	libbpf_set_print(print_libbpf);
	verifier_log = malloc(LOG_SIZE);
	if (!verifier_log)
		return 2;

	obj = bpf_object__open_file(path, NULL);
	if (!obj) {
		printf("FAIL %s: open: %s\n", base, strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(prog, obj)
		if (nnames < 64)
			names[nnames++] = strdup(bpf_program__name(prog));
	bpf_object__close(obj);

	for (i = 0; i < nnames; i++)
		failed |= load_one(path, base, variant, names[i], argc - first_set, argv + first_set, 4);
	return failed;
}
