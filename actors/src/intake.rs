//! Update intake: one [`StartUpdate`] request, whatever the image's source
//! ([`ImageSource`]: bytes, a client's descriptor, a Hubris archive, or an
//! image already held), becomes the update's one [`UpdateSpec`] and its
//! shared [`Image`]. Everything an SP would refuse is refused here first,
//! with nothing sent: the component, the image's size and shape, an
//! archive's slot rules and board. The image is spooled before the spec
//! exists, so a restart always finds the bytes of an update it knows.

use crate::error::{ImageError, RegistryError, UpdateError};
use crate::image::{Image, ImageStore, LoadError};
use crate::record::UpdateSpec;
use crate::reset::ResetOptions;
use crate::settings::DeliverySettings;
use crate::sp::SpHandle;
use crate::store::Spool;
use crate::types::{unix_ms, ArtifactInfo, AuxFlash, ComponentError};
use gateway_messages::SpComponent;
use std::sync::Arc;

/// Where an update's image comes from.
pub enum ImageSource {
    /// The bytes themselves.
    Bytes(Vec<u8>),
    /// A raw image in a file a client opened with its own rights (the
    /// daemon never opens a path a client names).
    File(std::fs::File),
    /// A Hubris build archive in such a file (`sp`, `rot`, `stage0`).
    Archive(std::fs::File),
    /// A raw image in a file of the daemon's own that no one else writes
    /// (an HTTP upload): delivered from the file, never held in memory.
    Upload(std::fs::File),
    /// An image the daemon holds already (a rollout's).
    Image(Arc<Image>),
}

/// Start (or find, idempotently) update `id` of `component` slot `slot`
/// on `sp` (a name or a serial number).
pub struct StartUpdate {
    pub sp: String,
    pub component: String,
    pub slot: u16,
    pub id: uuid::Uuid,
    pub source: ImageSource,
    /// Reset the SP into the new image once complete (`sp` only).
    pub activate: Option<ResetOptions>,
    /// Send an archive even if its caboose names another board than the
    /// target runs.
    pub force_board: bool,
    /// Abort an update of an unknown client that the SP holds, and start
    /// this one in its place.
    pub take_over: bool,
}

impl StartUpdate {
    /// A start of `source` with no activation and the board checked.
    pub fn new(sp: &str, component: &str, slot: u16, id: uuid::Uuid, source: ImageSource) -> Self {
        Self {
            sp: sp.into(),
            component: component.into(),
            slot,
            id,
            source,
            activate: None,
            force_board: false,
            take_over: false,
        }
    }
}

/// Archives larger than this are not read (no Hubris archive comes near).
pub const MAX_ARCHIVE_BYTES: u64 = 128 * 1024 * 1024;

/// The first sector of a host-flash image holds the SP's own data and
/// must be erased (0xFF) in the image.
const HOST_FLASH_RESERVED: usize = 64 * 1024;

/// What intake needs: where images are held and spooled, and the sizes
/// components take.
#[derive(Clone)]
pub struct Intake {
    pub images: ImageStore,
    pub spool: Option<Spool>,
    pub delivery: DeliverySettings,
    /// How long reading a client's image (or archive) may take.
    pub read_timeout: std::time::Duration,
    /// Archives read (and inflated) at once, at most: each may take its
    /// members' limits in memory, so many at once must wait their turn.
    pub archive_work: Arc<tokio::sync::Semaphore>,
}

/// Archives read at once by default.
pub const ARCHIVES_AT_ONCE: usize = 2;

impl Intake {
    /// The largest image `component` takes.
    pub fn max_image_len(&self, component: SpComponent) -> u64 {
        let d = &self.delivery;
        if component == SpComponent::HOST_CPU_BOOT_FLASH {
            u64::from(d.host_flash_capacity_mib) * 1024 * 1024
        } else if component == SpComponent::SP_ITSELF {
            u64::from(d.sp_image_capacity_kib) * 1024
        } else {
            u64::from(d.rot_image_capacity_kib) * 1024
        }
    }

    /// Refuse, before anything is sent, an image no SP would take: one of
    /// `len` bytes that start with `head` (at least its first 64 KiB).
    pub fn check_image(
        &self,
        component: SpComponent,
        len: u64,
        head: &[u8],
    ) -> Result<(), ImageError> {
        if len == 0 {
            return Err(ImageError::Empty);
        }
        let max = self.max_image_len(component);
        if len > max {
            return Err(ImageError::TooLarge {
                component,
                len,
                max,
            });
        }
        if component == SpComponent::HOST_CPU_BOOT_FLASH {
            let reserved = &head[..head.len().min(HOST_FLASH_RESERVED)];
            if reserved.iter().any(|&b| b != 0xFF) {
                return Err(ImageError::HostFlashNotErased);
            }
        }
        Ok(())
    }

    /// Turn `start` (for `component` of `sp`, both resolved) into the
    /// update's spec and image, spooled.
    pub async fn take(
        &self,
        sp: &SpHandle,
        component: SpComponent,
        start: StartUpdate,
    ) -> Result<(Arc<UpdateSpec>, Arc<Image>), RegistryError> {
        let slots = crate::types::update_slots(component);
        if start.slot >= slots {
            return Err(RegistryError::BadSlot {
                sp: sp.name().clone(),
                component,
                slot: start.slot,
                slots,
            });
        }
        if start.activate.is_some() && component != SpComponent::SP_ITSELF {
            return Err(ComponentError {
                name: component.to_string(),
                reason: "activation resets the SP into a new SP image; reset other \
                         components on their own"
                    .into(),
            }
            .into());
        }
        let (image, aux, artifact) = match start.source {
            ImageSource::Bytes(data) => (self.insert(data).await?, None, None),
            ImageSource::Image(image) => (image, None, None),
            ImageSource::File(file) => (self.load(component, file).await?, None, None),
            ImageSource::Upload(file) => (self.keep(component, file).await?, None, None),
            ImageSource::Archive(file) => {
                let (image, aux, info) = self.archive(component, start.slot, file).await?;
                if !start.force_board {
                    check_board(sp, component, info.bord.as_deref()).await?;
                }
                (image, aux, Some(info))
            }
        };
        // A raw SP image says what it is in its caboose too.
        let artifact = artifact.or_else(|| {
            (component == SpComponent::SP_ITSELF)
                .then(|| image.in_memory().and_then(raw_sp_artifact))
                .flatten()
        });
        let aux_len = aux.map_or(0, |a: AuxFlash| a.len as usize).min(image.len());
        let head_end = (aux_len + HOST_FLASH_RESERVED).min(image.len());
        let mut buf = Vec::new();
        let head = image
            .slice(aux_len..head_end, &mut buf)
            .map_err(|e| UpdateError::ImageUnreadable(Arc::new(e)))?;
        self.check_image(component, (image.len() - aux_len) as u64, head)?;
        // On disk before the SP hears of it: a restart needs the bytes.
        if let Some(spool) = self.spool.clone() {
            let kept = image.clone();
            tokio::task::spawn_blocking(move || spool.put(&kept))
                .await
                .map_err(|_| RegistryError::Stopped)?
                .map_err(|e| UpdateError::Spool(Arc::new(e)))?;
        }
        let spec = UpdateSpec {
            id: start.id,
            sp: sp.name().clone(),
            sp_serial: sp.serial(),
            component,
            slot: start.slot,
            image: image.hash,
            total_bytes: image.len() as u64,
            aux,
            artifact,
            activate: start.activate,
            started_unix_ms: unix_ms(),
            took_over: None,
        };
        Ok((Arc::new(spec), image))
    }

    async fn insert(&self, data: Vec<u8>) -> Result<Arc<Image>, RegistryError> {
        let images = self.images.clone();
        tokio::task::spawn_blocking(move || images.insert(data))
            .await
            .map_err(|_| RegistryError::Stopped)
    }

    /// A raw image from a client's descriptor: checked (a regular file
    /// that fits `component`) before it is read, and not kept twice if
    /// the store holds it already.
    async fn load(
        &self,
        component: SpComponent,
        file: std::fs::File,
    ) -> Result<Arc<Image>, RegistryError> {
        let max = self.max_image_len(component);
        self.load_file(file, max)
            .await?
            .map_err(|e| load_error(component, e))
    }

    /// An upload the daemon wrote itself, kept in its file (see
    /// [`ImageSource::Upload`]).
    async fn keep(
        &self,
        component: SpComponent,
        file: std::fs::File,
    ) -> Result<Arc<Image>, RegistryError> {
        let max = self.max_image_len(component);
        let images = self.images.clone();
        let kept = tokio::task::spawn_blocking(move || images.keep_file(file, max))
            .await
            .map_err(|_| RegistryError::Stopped)?;
        kept.map_err(|e| load_error(component, e))
    }

    /// Load the image in a client's `file` (at most `max` bytes) off the
    /// actor threads, within [`Intake::read_timeout`]: a read that hangs
    /// (a network file system gone) is abandoned and refused.
    pub async fn load_file(
        &self,
        file: std::fs::File,
        max: u64,
    ) -> Result<Result<Arc<Image>, LoadError>, RegistryError> {
        let images = self.images.clone();
        let reading = tokio::task::spawn_blocking(move || images.load(&file, max));
        match tokio::time::timeout(self.read_timeout, reading).await {
            Ok(loaded) => loaded.map_err(|_| RegistryError::Stopped),
            Err(_) => Ok(Err(
                ImageError::ReadTimedOut(self.read_timeout.as_secs()).into()
            )),
        }
    }

    /// The image (and, for `sp`, its aux-flash image) of a Hubris archive
    /// in `file`, under the slot rules, with what its caboose says.
    async fn archive(
        &self,
        component: SpComponent,
        slot: u16,
        file: std::fs::File,
    ) -> Result<(Arc<Image>, Option<AuxFlash>, ArtifactInfo), RegistryError> {
        use artifacts::UpdateTarget;
        let target = match component {
            c if c == SpComponent::SP_ITSELF => UpdateTarget::Sp,
            c if c == SpComponent::ROT => UpdateTarget::Rot,
            c if c == SpComponent::STAGE0 => UpdateTarget::Stage0,
            c => return Err(ImageError::NotArchiveTarget { component: c }.into()),
        };
        let _turn = self
            .archive_work
            .acquire()
            .await
            .map_err(|_| RegistryError::Stopped)?;
        let reading = tokio::task::spawn_blocking(move || read_archive(file));
        let archive = match tokio::time::timeout(self.read_timeout, reading).await {
            Ok(read) => read.map_err(|_| RegistryError::Stopped)??,
            Err(_) => return Err(ImageError::ReadTimedOut(self.read_timeout.as_secs()).into()),
        };
        archive
            .check_target(target, slot)
            .map_err(|e| ImageError::Archive(Arc::new(e)))?;
        let info = artifact_info(archive.caboose(), archive.image_name.clone());
        let aux = archive.aux_flash.as_ref().map(|a| AuxFlash {
            len: a.aux_flash_size() as u32,
            chck: a.chck(),
        });
        let mut data = archive
            .aux_flash
            .as_ref()
            .map_or_else(Vec::new, |a| a.data().to_vec());
        data.extend_from_slice(&archive.image);
        Ok((self.insert(data).await?, aux, info))
    }
}

/// Why an image of `component` could not be loaded, as the registry says.
pub(crate) fn load_error(component: SpComponent, e: LoadError) -> RegistryError {
    RegistryError::from(match e {
        LoadError::Bad(e) => UpdateError::BadImage(e),
        LoadError::TooLarge { len, max } => ImageError::TooLarge {
            component,
            len,
            max,
        }
        .into(),
        LoadError::Read(e) => UpdateError::ImageUnreadable(e),
    })
}

/// Read a Hubris archive from a descriptor a client passed: a regular file
/// of bounded size.
fn read_archive(file: std::fs::File) -> Result<artifacts::HubrisArchive, RegistryError> {
    let unreadable = |e| RegistryError::from(UpdateError::ImageUnreadable(Arc::new(e)));
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(ImageError::NotRegularFile("not a regular file").into());
    }
    // Never wait for a file that stats as regular but reads like a device.
    if let Ok(flags) = rustix::fs::fcntl_getfl(&file) {
        let _ = rustix::fs::fcntl_setfl(&file, flags | rustix::fs::OFlags::NONBLOCK);
    }
    if meta.len() > MAX_ARCHIVE_BYTES {
        return Err(ImageError::ArchiveTooLarge(meta.len(), MAX_ARCHIVE_BYTES).into());
    }
    artifacts::HubrisArchive::read(std::io::BufReader::new(file))
        .map_err(|e| ImageError::Archive(Arc::new(e)).into())
}

/// Refuse an archive built for another board than the one `sp`'s running
/// `component` image names in its caboose. A target without a `BORD`
/// takes any (as the SP does).
async fn check_board(
    sp: &SpHandle,
    component: SpComponent,
    bord: Option<&str>,
) -> Result<(), RegistryError> {
    let slot = if component == SpComponent::SP_ITSELF {
        0
    } else {
        sp.info()
            .identity
            .and_then(|i| i.rot_active_slot)
            .unwrap_or(0)
    };
    // Stage0 images carry the RoT's board.
    let caboose_of = if component == SpComponent::STAGE0 {
        SpComponent::ROT
    } else {
        component
    };
    let Some(running) = sp.caboose(caboose_of, slot, *b"BORD").await? else {
        return Ok(());
    };
    let name = sp.name().clone();
    match bord {
        Some(b) if b == running => Ok(()),
        Some(b) => Err(ImageError::WrongBoard {
            sp: name,
            component: caboose_of,
            archive: b.into(),
            running,
        }
        .into()),
        None => Err(ImageError::NoBoard {
            sp: name,
            component: caboose_of,
            running,
        }
        .into()),
    }
}

/// What a caboose says, for an update's spec.
fn artifact_info(
    caboose: Option<&artifacts::image::Caboose>,
    image_name: Option<String>,
) -> ArtifactInfo {
    let text = |v: Result<Option<&[u8]>, artifacts::Error>| {
        v.ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    ArtifactInfo {
        name: caboose.and_then(|c| text(c.name())),
        vers: caboose.and_then(|c| text(c.vers())),
        gitc: caboose.and_then(|c| text(c.gitc())),
        bord: caboose.and_then(|c| text(c.bord())),
        image_name,
    }
}

/// The caboose of a raw SP image (header at 0x298), if it has one.
fn raw_sp_artifact(image: &[u8]) -> Option<ArtifactInfo> {
    use artifacts::image::{Caboose, ImageHeader, SP_HEADER_OFFSET};
    let header = ImageHeader::at(image, SP_HEADER_OFFSET)?;
    let caboose = Caboose::find(image, &header).ok()??;
    Some(artifact_info(Some(&caboose), None))
}
