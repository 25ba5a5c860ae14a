/*
 * Test helper: one write(2) or read(2) per request on a DLM misc device
 * (/dev/dlm-control, /dev/dlm_<lockspace>). Node's fs.write cannot be used there:
 * libuv retries a "partial" write, and these devices return a lock id or a minor
 * number from write(), so the retry sends the kernel the rest of the buffer as a
 * second, bogus request. Compiled by test/helpers/kernel-dlm.ts at test time.
 *
 * stdin, one command per line:      stdout, one line per command:
 *   w <hex bytes>                     r <return value>   or   e <errno>
 *   r                                 d <hex bytes>      or   e <errno>
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int unhex(const char *s, unsigned char *out, size_t max)
{
	size_t n = 0;
	while (s[0] && s[1] && s[0] != '\n' && n < max) {
		unsigned int v;
		if (sscanf(s, "%2x", &v) != 1)
			return -1;
		out[n++] = (unsigned char)v;
		s += 2;
	}
	return (int)n;
}

int main(int argc, char **argv)
{
	static char line[65536];
	static unsigned char buf[32768];
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DEVICE\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		printf("e %d\n", errno);
		return 1;
	}
	printf("o\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		if (line[0] == 'w' && line[1] == ' ') {
			int n = unhex(line + 2, buf, sizeof(buf));
			ssize_t r = n < 0 ? -1 : write(fd, buf, (size_t)n);
			if (r < 0)
				printf("e %d\n", n < 0 ? EINVAL : errno);
			else
				printf("r %zd\n", r);
		} else if (line[0] == 'r') {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r < 0) {
				printf("e %d\n", errno);
			} else {
				printf("d ");
				for (ssize_t i = 0; i < r; i++)
					printf("%02x", buf[i]);
				printf("\n");
			}
		} else {
			printf("e %d\n", EINVAL);
		}
		fflush(stdout);
	}
	close(fd);
	return 0;
}
