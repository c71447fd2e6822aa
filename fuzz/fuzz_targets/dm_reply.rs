//! Fuzz target: the device-mapper replies ephemcrypt decodes (target versions, tables, device
//! status) and the table loads it encodes. See ephemcrypt::fuzzing::dm_reply.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ephemcrypt::fuzzing::dm_reply(data));

/// `struct dm_ioctl`, the start of every device-mapper request buffer.
const DM_HEADER: usize = 312;

/// This binary's kernel, for device-mapper: ephemcrypt calls `ioctl(2)` through the C library, and
/// a definition in the executable takes the place of the library's, so its requests on the control
/// device (opened on /dev/null here) come to `ephemcrypt::fuzzing::dm_kernel`, which answers them
/// from the input. Anything else is refused with ENOTTY.
#[no_mangle]
pub extern "C" fn ioctl(_fd: libc::c_int, request: libc::c_ulong, arg: *mut libc::c_void) -> libc::c_int {
    let fail = |errno: libc::c_int| {
        // SAFETY: __errno_location returns this thread's errno, valid for writes.
        unsafe { *libc::__errno_location() = errno };
        -1
    };
    // _IOWR(0xfd, nr, struct dm_ioctl)
    if (request >> 8) & 0xff != 0xfd || (request >> 16) & 0x3fff != DM_HEADER as libc::c_ulong || arg.is_null() {
        return fail(libc::ENOTTY);
    }
    // SAFETY: a device-mapper request is a buffer of at least the 312-byte `struct dm_ioctl`
    // (dm/ioctl.rs asserts it before the call), whose `data_size`, at offset 12, is its length.
    let len = unsafe { std::ptr::read_unaligned(arg.cast::<u8>().add(12).cast::<u32>()) } as usize;
    if len < DM_HEADER {
        return fail(libc::EINVAL);
    }
    // SAFETY: as above: `len` bytes at `arg` are the caller's buffer, which nothing else touches
    // during the call.
    let buf = unsafe { std::slice::from_raw_parts_mut(arg.cast::<u8>(), len) };
    match ephemcrypt::fuzzing::dm_kernel((request & 0xff) as u8, buf) {
        Ok(()) => 0,
        Err(errno) => fail(errno),
    }
}
