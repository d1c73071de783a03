/*
 * A scripted stand-in for castor-vmm's control socket, for test_cli.sh: it
 * answers every request with fixed data so that the CLI's output can be compared
 * byte for byte. Not a model of the real server's behaviour.
 *
 *   cli_fake_vmm SOCKET [normal|weird|id0|silent]
 *
 * normal: status of a 2-vCPU VM "fake-vm", pause/quit succeed, resume fails with
 *         -EALREADY "vm is not paused", dirty echoes --harvest as `tracking`,
 *         snapshot echoes the path it was sent, restore fails with -ENOENT
 *         naming the paths it was sent; exits after answering quit.
 * weird:  like normal, but the VM name holds quotes, control bytes and invalid UTF-8.
 * id0:    answers one request as castor-vmm answers one it cannot decode: id 0,
 *         -EBADMSG "malformed request"; then exits.
 * silent: accepts one connection, never answers, exits when the client leaves.
 * dr-primary, dr-replica, dr-streaming: like normal, and ha status answers as the
 *         primary of an async (DR) session, its replica after the primary was lost
 *         (checkpoint 42, applied 3.5 s ago), or its replica while the primary
 *         still streams; a failover answers failed-over at epoch 42 -- refused
 *         with -EBUSY in dr-streaming unless forced, as castor-vmm refuses it.
 *         dr-replica answers a DR copy (castor dr test) for the directory it was
 *         sent: checkpoint 42, a copied disk and a read-only one, one NIC;
 *         dr-primary refuses it as a primary does, and answers an unprotect
 *         only when it names the DR session (castor dr unprotect).
 * Exits by itself after 30 s in any case.
 */
#include "proto/pb.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int listen_on(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Answer one request; *quit_out is set after a QuitRequest. */
static int serve_one(int fd, const char *mode, bool *quit_out)
{
	Castor__Response resp = CASTOR__RESPONSE__INIT;
	Castor__VmStatus st = CASTOR__VM_STATUS__INIT;
	Castor__VcpuStatus v0 = CASTOR__VCPU_STATUS__INIT, v1 = CASTOR__VCPU_STATUS__INIT;
	Castor__VcpuStatus *vs[2] = {&v0, &v1};
	Castor__DirtyStats d = CASTOR__DIRTY_STATS__INIT;
	Castor__SnapshotResult snap = CASTOR__SNAPSHOT_RESULT__INIT;
	Castor__HaStatus ha = CASTOR__HA_STATUS__INIT;
	Castor__DrCopyResult drc = CASTOR__DR_COPY_RESULT__INIT;
	Castor__UnprotectResult unp = CASTOR__UNPROTECT_RESULT__INIT;
	char snap_path[4200], disk0[4200], *disks[2] = {disk0, "/srv/base.img"};
	char *macs[1] = {"52:54:00:12:34:56"};
	protobuf_c_boolean ro[2] = {0, 1};
	bool primary = !strcmp(mode, "dr-primary");
	char paths[4096];
	ProtobufCMessage *msg = NULL;
	Castor__Request *req;
	int rc;

	rc = pb_frame_recv(fd, &castor__request__descriptor, &msg, 5000);
	if (rc < 0)
		goto out;
	req = (Castor__Request *)msg;
	resp.id = req->id;
	if (!strcmp(mode, "id0")) {
		resp.id = 0;
		resp.error = -EBADMSG;
		resp.message = "malformed request";
		*quit_out = true;
		goto send;
	}
	switch (req->body_case) {
	case CASTOR__REQUEST__BODY_STATUS:
		st.name = !strcmp(mode, "weird") ? "we\"ird\\\n\x01\xff \xc3\xa9" : "fake-vm";
		st.vcpus = 2;
		st.mem_bytes = 1ull << 30;
		st.run_state = "running";
		st.guest_counter = 123456;
		st.exits = 4567;
		st.uptime_ns = 12300000000ull;
		st.pauses = 3;
		st.outputs = 789;
		st.n_vcpu = 2;
		st.vcpu = vs;
		v0.index = 0;
		v0.counter = 61728;
		v0.out_seq = 394;
		v0.exits = 2300;
		v0.io_exits = 2000;
		v0.mmio_exits = 12;
		v0.state = "running";
		v1.index = 1;
		v1.counter = 61728;
		v1.out_seq = 395;
		v1.exits = 2267;
		v1.io_exits = 1999;
		v1.mmio_exits = 0;
		v1.state = "parked";
		resp.body_case = CASTOR__RESPONSE__BODY_STATUS;
		resp.status = &st;
		break;
	case CASTOR__REQUEST__BODY_PAUSE:
		break;
	case CASTOR__REQUEST__BODY_RESUME:
		resp.error = -EALREADY;
		resp.message = "vm is not paused";
		break;
	case CASTOR__REQUEST__BODY_QUIT:
		*quit_out = true;
		break;
	case CASTOR__REQUEST__BODY_DIRTY_STATS:
		d.tracking = req->dirty_stats->harvest;
		d.harvests = req->dirty_stats->harvest ? 1 : 0;
		d.last_dirty_pages = req->dirty_stats->harvest ? 345 : 0;
		d.last_harvest_ns = req->dirty_stats->harvest ? 1234567 : 0;
		d.vmm_dirty_pages = req->dirty_stats->harvest ? 3 : 0;
		d.ram_pages = 262144;
		resp.body_case = CASTOR__RESPONSE__BODY_DIRTY_STATS;
		resp.dirty_stats = &d;
		break;
	case CASTOR__REQUEST__BODY_SNAPSHOT:
		snap.path = req->snapshot->path;
		snap.stream_id = 0x5eed;
		resp.body_case = CASTOR__RESPONSE__BODY_SNAPSHOT;
		resp.snapshot = &snap;
		break;
	case CASTOR__REQUEST__BODY_RESTORE: {
		size_t i, n = 0;

		n += (size_t)snprintf(paths, sizeof(paths), "fake: restore of");
		for (i = 0; i < req->restore->n_snapshot && n < sizeof(paths); i++)
			n += (size_t)snprintf(paths + n, sizeof(paths) - n, " %s",
					      req->restore->snapshot[i]);
		resp.error = -ENOENT;
		resp.message = paths;
		break;
	}
	case CASTOR__REQUEST__BODY_HA_STATUS:
	case CASTOR__REQUEST__BODY_FAILOVER:
		if (strncmp(mode, "dr-", 3)) {
			resp.error = -EOPNOTSUPP;
			resp.message = "unknown request";
			break;
		}
		ha.role = primary ? "primary" : "replica";
		ha.state = primary			   ? "protected"
			   : !strcmp(mode, "dr-streaming") ? "protected"
							   : "primary-lost";
		ha.mode = primary ? "async" : "interval";
		ha.epoch = primary ? 43 : 42;
		ha.acked_epoch = primary ? 42 : 0;
		ha.epochs = 43;
		ha.peer = primary ? "192.0.2.7:7000" : "";
		ha.last_error = "";
		if (primary) {
			ha.rpo_target_ms = 5000;
			ha.rpo_ns = 1200000000ull;
			ha.rpo_p50_ns = 2600000000ull;
			ha.rpo_p99_ns = 4900000000ull;
			ha.rpo_alerts = 2;
		} else {
			ha.ckpt_age_ns = 3500000000ull;
		}
		if (req->body_case == CASTOR__REQUEST__BODY_HA_STATUS) {
			resp.body_case = CASTOR__RESPONSE__BODY_HA_STATUS;
			resp.ha_status = &ha;
			break;
		}
		if (!strcmp(mode, "dr-streaming") && !req->failover->force) {
			resp.error = -EBUSY;
			resp.message = "the primary is still streaming epochs";
			break;
		}
		ha.state = "failed-over";
		ha.failed_over = true;
		resp.body_case = CASTOR__RESPONSE__BODY_FAILOVER;
		resp.failover = &ha;
		break;
	case CASTOR__REQUEST__BODY_UNPROTECT:
		/* dr-primary: only the DR session's stop (castor dr unprotect) is answered */
		if (strcmp(mode, "dr-primary") || !req->unprotect->dr) {
			resp.error = -ENOENT;
			resp.message = "fake: only a DR session's unprotect is scripted";
			break;
		}
		resp.body_case = CASTOR__RESPONSE__BODY_UNPROTECT;
		resp.unprotect = &unp;
		break;
	case CASTOR__REQUEST__BODY_DR_COPY:
		if (strcmp(mode, "dr-replica")) {
			resp.error = -EOPNOTSUPP;
			resp.message = "this castor-vmm is not a replica: a DR copy comes from one";
			break;
		}
		snprintf(snap_path, sizeof(snap_path), "%s/checkpoint.snap", req->dr_copy->dir);
		snprintf(disk0, sizeof(disk0), "%s/disk0.img", req->dr_copy->dir);
		drc.epoch = 42;
		drc.ckpt_age_ns = 400000000ull;
		drc.snapshot = snap_path;
		drc.snapshot_bytes = 32ull << 20;
		drc.n_disks = drc.n_disks_read_only = 2;
		drc.disks = disks;
		drc.disks_read_only = ro;
		drc.disk_bytes = 8ull << 20;
		drc.n_macs = 1;
		drc.macs = macs;
		drc.total_ns = 35000000ull;
		resp.body_case = CASTOR__RESPONSE__BODY_DR_COPY;
		resp.dr_copy = &drc;
		break;
	default:
		resp.error = -EOPNOTSUPP;
		resp.message = "unknown request";
		break;
	}
send:
	rc = pb_frame_send(fd, &resp.base);
out:
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
	return rc;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 2 ? argv[2] : "normal";
	bool quit = false;
	char c;
	int lfd, fd;

	if (argc < 2) {
		fprintf(stderr,
			"usage: cli_fake_vmm SOCKET [normal|weird|id0|silent|dr-primary|dr-replica|"
			"dr-streaming]\n");
		return 2;
	}
	alarm(30);
	lfd = listen_on(argv[1]);
	if (lfd < 0) {
		perror("cli_fake_vmm: listen");
		return 1;
	}
	while (!quit) {
		fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (!strcmp(mode, "silent")) {
			while (read(fd, &c, 1) > 0)
				;
			quit = true;
		} else {
			serve_one(fd, mode, &quit);
		}
		close(fd);
	}
	close(lfd);
	unlink(argv[1]);
	return 0;
}
