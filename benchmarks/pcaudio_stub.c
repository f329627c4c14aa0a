/* Stand-in for libpcaudio.so.0 (espeak-ng's audio output), for machines without PulseAudio/ALSA.
 *
 * Why: Debian's libpcaudio0 links libpulse and libasound, which pull in X11, D-Bus and systemd libraries
 * that a bare CUDA image does not have, so espeak-ng would not even load. The corpus generator only runs
 * `espeak-ng --stdout`, which never opens an audio device; these symbols let the binary load and report
 * "no audio device" if anything ever asks for one. benchmarks/gpu_run.sh puts it first on
 * LD_LIBRARY_PATH only when the real library's dependencies are missing.
 *
 *   cc -shared -fPIC -O2 -Wl,-soname,libpcaudio.so.0 -o libpcaudio.so.0 pcaudio_stub.c
 */
#include <stddef.h>
#include <stdint.h>

struct audio_object;

struct audio_object *create_audio_device_object(const char *device, const char *name, const char *description) {
    (void)device; (void)name; (void)description;
    return NULL;
}
int audio_object_open(struct audio_object *o, int format, uint32_t rate, uint8_t channels) {
    (void)o; (void)format; (void)rate; (void)channels;
    return -1;
}
void audio_object_close(struct audio_object *o) { (void)o; }
void audio_object_destroy(struct audio_object *o) { (void)o; }
int audio_object_write(struct audio_object *o, const void *data, size_t bytes) {
    (void)o; (void)data; (void)bytes;
    return -1;
}
int audio_object_drain(struct audio_object *o) { (void)o; return -1; }
int audio_object_flush(struct audio_object *o) { (void)o; return -1; }
const char *audio_object_strerror(struct audio_object *o, int error) {
    (void)o; (void)error;
    return "no audio device (libpcaudio stub)";
}
