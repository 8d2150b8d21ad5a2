//! The Windows backend: named, pagefile-backed file mappings (`CreateFileMappingW`).
//!
//! Compiled only on Windows; type-checked from Linux with `cargo check --target
//! x86_64-pc-windows-gnu`, never run. A mapping is created with `SEC_COMMIT`, so its whole size
//! is charged against the commit limit at creation (running out is `NoSpace` then, never a fault
//! later), under `Local\perfopt-<pid>-<128 random bits>`, with a protected access control list
//! that grants access to its owner only (SDDL `D:P(A;;GA;;;OW)`), the counterpart of mode 0600.
//! Windows has no owner or size to check before mapping as Linux does: the access control list
//! refuses other users at `OpenFileMappingW`, and the view's region size is checked against the
//! length before any byte is read. A mapping dies with its last handle, so `unlink` has nothing
//! to do and nothing needs sweeping; it cannot be sealed.

use std::ffi::c_void;

use perf_core::seams::{PlatformShm, SegmentId, ShmError, ShmSegment, ShmView};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_COMMITMENT_LIMIT,
    ERROR_DISK_FULL, ERROR_FILE_NOT_FOUND, ERROR_NOT_ENOUGH_MEMORY, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE, LocalFree,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, OpenFileMappingW, PAGE_READWRITE, SEC_COMMIT,
    UnmapViewOfFile, VirtualQuery,
};

use crate::names::{MAX_NAME_LEN, is_name_char, name_identity, random_hex128, truncated};
use crate::options::{SMALL_PAGE, SegmentInfo, ShmOptions, touch_pages};

/// How many random names are tried before `create` gives up on collisions.
const NAME_ATTEMPTS: usize = 4;

/// Owner-only access: a protected DACL granting generic-all to the owner, nobody else.
const OWNER_ONLY_SDDL: &str = "D:P(A;;GA;;;OW)";

/// Shared memory from named file mappings (Windows): the default backend there.
#[derive(Debug, Clone, Default)]
pub struct WindowsShm {
    options: ShmOptions,
}

impl WindowsShm {
    /// A backend with these options.
    pub fn new(options: ShmOptions) -> WindowsShm {
        WindowsShm { options }
    }

    /// Creates a committed, owner-only mapping of `len` bytes.
    pub fn create_segment(&self, len: usize) -> Result<WindowsSegment, ShmError> {
        self.options.check_len(len)?;
        let sd = OwnerOnly::new()?;
        let attributes = SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: sd.0,
            bInheritHandle: 0,
        };
        let size = len as u64;
        for _ in 0..NAME_ATTEMPTS {
            let name = format!("Local\\perfopt-{}-{}", std::process::id(), random_hex128()?);
            let wide = wide(&name);
            // SAFETY: `wide` is a NUL-terminated UTF-16 string and `attributes` points to a
            // valid security descriptor; both outlive the call. The pagefile handle asks for an
            // anonymous section.
            let handle = unsafe {
                CreateFileMappingW(
                    INVALID_HANDLE_VALUE,
                    &attributes,
                    PAGE_READWRITE | SEC_COMMIT,
                    (size >> 32) as u32,
                    size as u32,
                    wide.as_ptr(),
                )
            };
            // SAFETY: reads this thread's last error; no arguments.
            let error = unsafe { GetLastError() };
            if handle.is_null() {
                return Err(win_error("CreateFileMappingW", error, len));
            }
            let handle = Handle(handle);
            if error == ERROR_ALREADY_EXISTS {
                continue;
            }
            let view = View::map(&handle, FILE_MAP_READ | FILE_MAP_WRITE, len)?;
            return Ok(WindowsSegment {
                id: SegmentId::Named(name.clone()),
                inode: name_identity(&name),
                view,
                _handle: handle,
            });
        }
        Err(ShmError::Os(format!(
            "creating a file mapping failed: {NAME_ATTEMPTS} random names were all taken"
        )))
    }

    /// Opens mapping `id` read-only and checks that it holds at least `len` bytes.
    pub fn open_view(&self, id: &SegmentId, len: usize) -> Result<WindowsView, ShmError> {
        let SegmentId::Named(name) = id else {
            return Err(ShmError::Denied(
                id.to_string(),
                "expected a named segment id, got a memfd one".to_owned(),
            ));
        };
        let valid = name
            .strip_prefix("Local\\")
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(is_name_char));
        if !valid || name.len() > MAX_NAME_LEN {
            return Err(ShmError::Denied(
                truncated(name).to_owned(),
                "invalid segment name: expected Local\\ and letters, digits, '-', '_' or '.'"
                    .to_owned(),
            ));
        }
        if len == 0 || len > self.options.max_segment_len {
            return Err(ShmError::Denied(
                name.clone(),
                format!(
                    "expected a length of 1 to {} bytes, got {len}",
                    self.options.max_segment_len
                ),
            ));
        }
        let wide = wide(name);
        // SAFETY: `wide` is a NUL-terminated UTF-16 string that outlives the call.
        let handle = unsafe { OpenFileMappingW(FILE_MAP_READ, 0, wide.as_ptr()) };
        if handle.is_null() {
            // SAFETY: reads this thread's last error; no arguments.
            let error = unsafe { GetLastError() };
            return Err(match error {
                ERROR_FILE_NOT_FOUND => ShmError::NotFound(name.clone()),
                ERROR_ACCESS_DENIED => ShmError::Denied(
                    name.clone(),
                    "access denied: the mapping belongs to another user".to_owned(),
                ),
                e => win_error("OpenFileMappingW", e, len),
            });
        }
        let handle = Handle(handle);
        // Map the whole section (0 bytes = all), then check its size before use.
        let view = View::map(&handle, FILE_MAP_READ, 0)?;
        if view.region_size() < len {
            return Err(ShmError::Denied(
                name.clone(),
                format!(
                    "holds {} bytes, expected at least {len}",
                    view.region_size()
                ),
            ));
        }
        let mut view = view;
        view.len = len;
        Ok(WindowsView {
            id: id.clone(),
            inode: name_identity(name),
            view,
            _handle: handle,
        })
    }
}

impl PlatformShm for WindowsShm {
    fn name(&self) -> &'static str {
        "windows"
    }

    fn create(&self, len: usize) -> Result<Box<dyn ShmSegment>, ShmError> {
        Ok(Box::new(self.create_segment(len)?))
    }

    fn open(&self, id: &SegmentId, len: usize) -> Result<Box<dyn ShmView>, ShmError> {
        Ok(Box::new(self.open_view(id, len)?))
    }

    fn seal(&self, segment: &mut dyn ShmSegment) -> Result<(), ShmError> {
        Err(ShmError::Os(format!(
            "sealing {} is not possible: Windows file mappings cannot be resized, nor sealed",
            segment.id()
        )))
    }

    fn unlink(&self, _id: &SegmentId) -> Result<(), ShmError> {
        Ok(())
    }
}

fn win_error(what: &str, error: u32, len: usize) -> ShmError {
    match error {
        ERROR_NOT_ENOUGH_MEMORY | ERROR_COMMITMENT_LIMIT | ERROR_DISK_FULL => {
            ShmError::NoSpace(len as u64)
        }
        e => ShmError::Os(format!("{what} failed: Windows error {e}")),
    }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// An owner-only security descriptor, freed on drop.
struct OwnerOnly(PSECURITY_DESCRIPTOR);

impl OwnerOnly {
    fn new() -> Result<OwnerOnly, ShmError> {
        let sddl = wide(OWNER_ONLY_SDDL);
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `sddl` is NUL-terminated UTF-16; `sd` receives a descriptor allocated with
        // `LocalAlloc`, freed in `drop`; the size output is optional.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 || sd.is_null() {
            // SAFETY: reads this thread's last error; no arguments.
            let e = unsafe { GetLastError() };
            return Err(ShmError::Os(format!(
                "building an owner-only security descriptor failed: Windows error {e}"
            )));
        }
        Ok(OwnerOnly(sd))
    }
}

impl Drop for OwnerOnly {
    fn drop(&mut self) {
        // SAFETY: the descriptor was allocated by the conversion above and is freed once.
        unsafe { LocalFree(self.0) };
    }
}

/// A section handle, closed on drop.
#[derive(Debug)]
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from Create/OpenFileMappingW and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

// SAFETY: a section handle may be used and closed from any thread.
unsafe impl Send for Handle {}
// SAFETY: `&Handle` allows nothing but mapping views, which is thread-safe.
unsafe impl Sync for Handle {}

/// A mapped view, unmapped on drop.
#[derive(Debug)]
struct View {
    ptr: *mut u8,
    len: usize,
}

impl View {
    /// Maps `len` bytes of the section (0 = all of it); `len` is the view's length either way
    /// once the region size is known.
    fn map(handle: &Handle, access: u32, len: usize) -> Result<View, ShmError> {
        // SAFETY: `handle` is a live section handle; offset 0 and `len` within the section
        // (or 0 for all of it) are valid arguments.
        let address = unsafe { MapViewOfFile(handle.0, access, 0, 0, len) };
        if address.Value.is_null() {
            // SAFETY: reads this thread's last error; no arguments.
            let e = unsafe { GetLastError() };
            return Err(win_error("MapViewOfFile", e, len));
        }
        let mut view = View {
            ptr: address.Value.cast(),
            len,
        };
        if len == 0 {
            view.len = view.region_size();
        }
        Ok(view)
    }

    /// The committed size of the mapped region, a multiple of the page size.
    fn region_size(&self) -> usize {
        let mut info = MEMORY_BASIC_INFORMATION::default();
        // SAFETY: `ptr` is the base of a live view and `info` a correctly sized buffer.
        let n = unsafe {
            VirtualQuery(
                self.ptr as *const c_void,
                &mut info,
                size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        if n == 0 { 0 } else { info.RegionSize }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the view maps at least `len` committed bytes (checked by the callers) and
        // lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and the view was mapped writable by its only owner.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let address = MEMORY_MAPPED_VIEW_ADDRESS {
            Value: self.ptr.cast(),
        };
        // SAFETY: `ptr` is the base address MapViewOfFile returned; it is unmapped once.
        unsafe { UnmapViewOfFile(address) };
    }
}

// SAFETY: the view is plain memory owned by this value; access follows the shared-memory
// protocol described in the crate docs.
unsafe impl Send for View {}
// SAFETY: as above.
unsafe impl Sync for View {}

/// A file mapping this process created: writable.
#[derive(Debug)]
pub struct WindowsSegment {
    id: SegmentId,
    inode: u64,
    view: View,
    _handle: Handle,
}

impl WindowsSegment {
    /// What the segment got: committed base pages.
    pub fn info(&self) -> SegmentInfo {
        SegmentInfo::small(SMALL_PAGE)
    }
}

impl ShmSegment for WindowsSegment {
    fn id(&self) -> &SegmentId {
        &self.id
    }

    fn inode(&self) -> u64 {
        self.inode
    }

    fn len(&self) -> usize {
        self.view.len
    }

    fn as_slice(&self) -> &[u8] {
        self.view.bytes()
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.view.bytes_mut()
    }

    /// Touches every page without changing the bytes (they are committed already).
    fn prefault(&mut self) -> Result<(), ShmError> {
        touch_pages(self.view.bytes_mut(), SMALL_PAGE);
        Ok(())
    }
}

/// A file mapping of another process, mapped read-only.
#[derive(Debug)]
pub struct WindowsView {
    id: SegmentId,
    inode: u64,
    view: View,
    _handle: Handle,
}

impl ShmView for WindowsView {
    fn id(&self) -> &SegmentId {
        &self.id
    }

    fn inode(&self) -> u64 {
        self.inode
    }

    fn len(&self) -> usize {
        self.view.len
    }

    fn as_slice(&self) -> &[u8] {
        self.view.bytes()
    }
}
