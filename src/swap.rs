//! PURE: the swap header, as mkswap writes it (version 1, "SWAPSPACE2"), so no mkswap is needed
//! in the initramfs. blkid and swapon(2) accept it.

/// Offsets inside the first page (linux/swap.h `union swap_header`).
const VERSION: usize = 1024;
const LAST_PAGE: usize = 1028;
const NR_BADPAGES: usize = 1032;
const UUID: usize = 1036;
const LABEL: usize = 1052;
const MAGIC: &[u8; 10] = b"SWAPSPACE2";

/// Why a swap area cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SwapError {
    /// Under ten pages (mkswap's floor).
    TooSmall { len: u64, page_size: usize },
    /// More pages than the header's 32-bit page count holds.
    TooLarge { len: u64 },
}

impl std::fmt::Display for SwapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwapError::TooSmall { len, page_size } => {
                write!(f, "a swap area needs at least 10 pages of {page_size} bytes, not {len} bytes")
            }
            SwapError::TooLarge { len } => write!(f, "a swap area of {len} bytes is too large"),
        }
    }
}

/// The first page of a swap area of `len` bytes; a partial last page is left unused. Refuses an
/// area under ten pages (mkswap's floor).
pub(crate) fn header(page_size: usize, len: u64, uuid: [u8; 16], label: &str) -> Result<Vec<u8>, SwapError> {
    let pages = len / page_size as u64;
    if pages < 10 {
        return Err(SwapError::TooSmall { len, page_size });
    }
    let last_page = u32::try_from(pages - 1).map_err(|_| SwapError::TooLarge { len })?;
    let mut page = vec![0u8; page_size];
    page[VERSION..VERSION + 4].copy_from_slice(&1u32.to_ne_bytes());
    page[LAST_PAGE..LAST_PAGE + 4].copy_from_slice(&last_page.to_ne_bytes());
    page[NR_BADPAGES..NR_BADPAGES + 4].copy_from_slice(&0u32.to_ne_bytes());
    page[UUID..UUID + 16].copy_from_slice(&uuid);
    let label = label.as_bytes();
    let n = label.len().min(15); // NUL-terminated in 16 bytes
    page[LABEL..LABEL + n].copy_from_slice(&label[..n]);
    page[page_size - MAGIC.len()..].copy_from_slice(MAGIC);
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_mkswap() {
        let uuid = [0x11; 16];
        let h = header(4096, 64 << 20, uuid, "ephemcrypt-swap-long-label").unwrap();
        assert_eq!(h.len(), 4096);
        assert_eq!(&h[4086..], b"SWAPSPACE2");
        assert_eq!(u32::from_ne_bytes(h[1024..1028].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(h[1028..1032].try_into().unwrap()), (64 << 20) / 4096 - 1);
        assert_eq!(&h[1036..1052], &uuid);
        assert_eq!(&h[1052..1068], b"ephemcrypt-swap\0");
        assert!(h[..1024].iter().all(|b| *b == 0), "boot bits cleared");
    }

    #[test]
    fn too_small() {
        assert!(header(4096, 9 * 4096, [0; 16], "").unwrap_err().to_string().contains("at least 10 pages"));
        assert_eq!(header(4096, 1 << 60, [0; 16], ""), Err(SwapError::TooLarge { len: 1 << 60 }));
        assert!(header(4096, 10 * 4096, [0; 16], "").is_ok());
    }
}
