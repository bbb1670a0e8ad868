//! Pre-flight: what can be known about a plugin file without mapping it.
//!
//! The dynamic loader trusts the file it maps: a library cut short by a failed copy or a full
//! disk is mapped anyway and the first touch of a missing page kills the process with
//! SIGBUS. So before any file is handed to a loader (even the probe's), [`check`] reads its
//! ELF headers with the `object` crate and refuses, with a reason a person can act on:
//! anything but a regular file (a link to `/dev/null` or to a folder, a dangling link), a file
//! that cannot be read, an ELF file of another class or machine than this host, something
//! that is not a shared object, and any loadable segment or section header table that ends
//! past the end of the file.

use std::{fs::File, io::Read, path::Path};

use object::{
    elf,
    read::elf::{FileHeader, ProgramHeader},
    Endianness, ReadCache,
};

use crate::loader::LoadErrorKind;

/// The ELF machine this host runs on, and its name for messages.
#[cfg(target_arch = "x86_64")]
const HOST_MACHINE: (u16, &str) = (62, "x86_64");
#[cfg(target_arch = "aarch64")]
const HOST_MACHINE: (u16, &str) = (183, "aarch64");
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const HOST_MACHINE: (u16, &str) = (0, std::env::consts::ARCH);

/// Checks that `path` is something the dynamic loader can map without harm. Symlinks are
/// followed; what they point at must be a readable, complete ELF shared object of this
/// machine.
pub fn check(path: &Path) -> Result<(), LoadErrorKind> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) => return Err(missing(path, &err)),
    };
    let file_type = meta.file_type();
    if !file_type.is_file() {
        return Err(LoadErrorKind::NotAFile(not_a_file(path, &file_type)));
    }
    let mut file = File::open(path).map_err(|err| unreadable(&err))?;
    let size = meta.len();
    if size == 0 {
        return Err(LoadErrorKind::Empty);
    }
    let mut ident = [0u8; 16];
    let got = read_up_to(&mut file, &mut ident).map_err(|err| unreadable(&err))?;
    if got < 4 || ident[..4] != *b"\x7fELF" {
        return Err(LoadErrorKind::NotElf);
    }
    if got < 16 {
        return Err(LoadErrorKind::Truncated(format!(
            "the ELF header is cut short: the file has {size} bytes"
        )));
    }
    let host_class = if cfg!(target_pointer_width = "64") {
        elf::ELFCLASS64
    } else {
        elf::ELFCLASS32
    };
    if ident[4] != host_class.0 {
        let bits = |class: u8| match class {
            1 => "32-bit",
            2 => "64-bit",
            _ => "unknown-class",
        };
        return Err(LoadErrorKind::WrongMachine(format!(
            "a {} ELF file, but this host is {}",
            bits(ident[4]),
            bits(host_class.0)
        )));
    }
    let cache = ReadCache::new(file);
    if cfg!(target_pointer_width = "64") {
        headers::<elf::FileHeader64<Endianness>>(&cache, size)
    } else {
        headers::<elf::FileHeader32<Endianness>>(&cache, size)
    }
}

/// The checks on the ELF header, the program headers and the section header table.
fn headers<Elf: FileHeader<Endian = Endianness>>(
    data: &ReadCache<File>,
    size: u64,
) -> Result<(), LoadErrorKind> {
    let header = Elf::parse(data).map_err(|_| {
        LoadErrorKind::Truncated(format!(
            "the ELF header is cut short: the file has {size} bytes"
        ))
    })?;
    let endian = header
        .endian()
        .map_err(|e| LoadErrorKind::BadElf(e.to_string()))?;
    if endian != Endianness::default() {
        return Err(LoadErrorKind::WrongMachine(format!(
            "an ELF file of the other byte order than this {} host",
            HOST_MACHINE.1
        )));
    }
    let machine = header.e_machine(endian).0;
    if machine != HOST_MACHINE.0 {
        let name = match machine {
            3 => "i386".to_string(),
            8 => "mips".to_string(),
            20 => "powerpc".to_string(),
            21 => "powerpc64".to_string(),
            40 => "arm".to_string(),
            62 => "x86_64".to_string(),
            183 => "aarch64".to_string(),
            243 => "riscv".to_string(),
            other => format!("ELF machine {other}"),
        };
        return Err(LoadErrorKind::WrongMachine(format!(
            "built for {name}, but this host is {}",
            HOST_MACHINE.1
        )));
    }
    if header.e_type(endian) != elf::ET_DYN {
        let what = match header.e_type(endian) {
            elf::ET_EXEC => "an executable",
            elf::ET_REL => "an object file (.o)",
            elf::ET_CORE => "a core dump",
            _ => "an ELF file of another type",
        };
        return Err(LoadErrorKind::NotSharedObject(what.to_string()));
    }
    let phdrs_end = end_of(
        header.e_phoff(endian).into(),
        u64::from(header.e_phnum(endian)) * u64::from(header.e_phentsize(endian)),
    )?;
    if phdrs_end > size {
        return Err(LoadErrorKind::Truncated(format!(
            "its program headers end at {phdrs_end} but the file has {size} bytes"
        )));
    }
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| LoadErrorKind::BadElf(format!("unreadable program headers: {e}")))?;
    for (index, segment) in segments.iter().enumerate() {
        if segment.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        let end = end_of(
            segment.p_offset(endian).into(),
            segment.p_filesz(endian).into(),
        )?;
        if end > size {
            return Err(LoadErrorKind::Truncated(format!(
                "segment {index} ends at {end} but the file has {size} bytes"
            )));
        }
    }
    // Not needed to map the file, but a table past the end means the file was cut short
    // and what lies before it cannot be trusted either.
    let shdrs_end = end_of(
        header.e_shoff(endian).into(),
        u64::from(header.e_shnum(endian)) * u64::from(header.e_shentsize(endian)),
    )?;
    if shdrs_end > size {
        return Err(LoadErrorKind::Truncated(format!(
            "its section headers end at {shdrs_end} but the file has {size} bytes"
        )));
    }
    Ok(())
}

/// Where a table or segment of `length` bytes at `offset` ends. The numbers come from the
/// file: a forged header can make the sum overflow, which must not wrap into a small, valid
/// looking end.
fn end_of(offset: u64, length: u64) -> Result<u64, LoadErrorKind> {
    offset.checked_add(length).ok_or_else(|| {
        LoadErrorKind::BadElf(format!(
            "a header places {length} bytes at offset {offset}, past the end of any file"
        ))
    })
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// A file that cannot be opened or read: the OS's words (e.g. "Permission denied").
pub(crate) fn unreadable(err: &std::io::Error) -> LoadErrorKind {
    LoadErrorKind::Unreadable(crate::loader::io_reason(err))
}

/// `metadata` failed: a dangling link says where it points.
fn missing(path: &Path, err: &std::io::Error) -> LoadErrorKind {
    match std::fs::read_link(path) {
        Ok(target) if err.kind() == std::io::ErrorKind::NotFound => {
            LoadErrorKind::NotAFile(format!("a dangling link to {}", target.display()))
        }
        _ => unreadable(err),
    }
}

/// What a non-regular file is, naming a link's target.
fn not_a_file(path: &Path, file_type: &std::fs::FileType) -> String {
    use std::os::unix::fs::FileTypeExt;
    let what = if file_type.is_dir() {
        "a folder"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_fifo() {
        "a named pipe"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    match std::fs::read_link(path) {
        Ok(target) => format!("a link to {} ({what})", target.display()),
        Err(_) => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_library_passes_and_cut_copies_say_where_they_end() {
        // The test binary is an ELF file of this machine, like a plugin.
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let whole = dir.path().join("whole");
        std::fs::write(&whole, &bytes).unwrap();
        match check(&whole) {
            Ok(()) | Err(LoadErrorKind::NotSharedObject(_)) => {}
            Err(other) => panic!("{other}"),
        }
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &bytes[..4096]).unwrap();
        let error = check(&cut).unwrap_err().to_string();
        assert!(
            error.starts_with("truncated: ") && error.ends_with("but the file has 4096 bytes"),
            "{error}"
        );
        let text = dir.path().join("text");
        std::fs::write(&text, "not a library").unwrap();
        assert_eq!(check(&text), Err(LoadErrorKind::NotElf));
        assert_eq!(
            check(dir.path()),
            Err(LoadErrorKind::NotAFile("a folder".into()))
        );
    }

    #[test]
    fn offsets_that_overflow_are_a_bad_header_not_a_wrapped_end() {
        // A shared library whose section header offset is forged to the top of the range:
        // offset + table size overflows u64.
        let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        bytes[16..18].copy_from_slice(&elf::ET_DYN.0.to_le_bytes());
        bytes[0x28..0x30].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let forged = dir.path().join("forged.so");
        std::fs::write(&forged, &bytes).unwrap();
        match check(&forged) {
            Err(LoadErrorKind::BadElf(why)) => assert!(why.contains("past the end"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
