//! Why the writer pod could not write to a fresh volume: the kubelet gives a volume to the
//! pod's `fsGroup` only where the volume plugin supports it, for CSI volumes per the
//! CSIDriver's `fsGroupPolicy` (`csiMountMgr.supportsFSGroup` in kubernetes
//! `pkg/volume/csi/csi_mounter.go`). A pod under the `restricted` Pod Security profile runs
//! as a non-root user without capabilities; it cannot write to a volume root that stays
//! `root:root 0755` because the kubelet leaves ownership alone. That is no evidence against
//! the storage, so the verdict is ABORT with what would decide it, never a FAIL; where the
//! kubelet should have applied `fsGroup` and the root still does not belong to it, the
//! volume is broken for every non-root pod: FAIL.

use super::functional::one_line;
use super::*;
use crate::cluster::workload::RUN_AS_USER;
use k8s_openapi::api::storage::v1::CSIDriver;

/// The `fsGroupPolicy` the kubelet uses when the CSIDriver object or its field is missing.
const DEFAULT_POLICY: &str = "ReadWriteOnceWithFSType";

/// The writer's exit code when it cannot create the token file; it then prints the volume
/// root as `ls -ldn` shows it.
pub(super) const CANNOT_CREATE: i32 = 3;

/// The writer's script: write `token`, or say how the volume root looks and exit with
/// [`CANNOT_CREATE`]. Needs only POSIX `sh`, `ls` and `cat`.
pub(super) fn writer_script(token: &str) -> String {
    format!(
        "set -e; if ! echo {token} > {TOKEN_FILE}; then ls -ldn {MOUNT}; exit {CANNOT_CREATE}; \
         fi; sync; cat {TOKEN_FILE}"
    )
}

/// The volume root as `ls -ldn` printed it.
#[derive(Debug, PartialEq)]
pub(super) struct Root {
    /// `drwxr-xr-x`
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
}

impl std::fmt::Display for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {}, gid {}, mode {}", self.uid, self.gid, self.mode)
    }
}

/// The `ls -ldn` line of the volume root in the writer's log (busybox and GNU print
/// `drwxr-xr-x  2 0  0  4096 Nov 29 16:06 /data`).
pub(super) fn parse_root(log: &str) -> Option<Root> {
    log.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.last() != Some(&MOUNT) || !fields.first()?.starts_with('d') {
            return None;
        }
        Some(Root {
            mode: fields.first()?.to_string(),
            uid: fields.get(2)?.parse().ok()?,
            gid: fields.get(3)?.parse().ok()?,
        })
    })
}

/// Whether the kubelet applies a pod's `fsGroup` to CSI volume `pv` under the driver's
/// `policy` (`None`, `File` or `ReadWriteOnceWithFSType`, the default also when the driver
/// has no CSIDriver object), and why: `csiMountMgr.supportsFSGroup` for a read-write
/// mount. Drivers with the VOLUME_MOUNT_GROUP node capability get `fsGroup` passed to
/// apply themselves under the same rule.
pub fn kubelet_applies_fs_group(policy: &str, pv: &PersistentVolume) -> (bool, String) {
    let name = pv.name_any();
    let spec = pv.spec.as_ref();
    let fs_type = spec
        .and_then(|s| s.csi.as_ref()?.fs_type.clone())
        .unwrap_or_default();
    let modes = spec
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    match policy {
        "None" => (
            false,
            "the kubelet never changes the ownership of its volumes".into(),
        ),
        "File" => (
            true,
            "the kubelet gives every volume to the pod's fsGroup".into(),
        ),
        _ if fs_type.is_empty() => (
            false,
            format!("the kubelet does so only for PVs with an fsType, and PV {name} has none"),
        ),
        _ if !modes
            .iter()
            .any(|m| m == "ReadWriteOnce" || m == "ReadWriteOncePod") =>
        {
            (
                false,
                format!(
                    "the kubelet does so only for ReadWriteOnce(Pod) PVs, and PV {name} is {}",
                    modes.join(", ")
                ),
            )
        }
        _ => (
            true,
            format!(
                "the kubelet gives ReadWriteOnce PVs with an fsType ({fs_type}) to the pod's fsGroup"
            ),
        ),
    }
}

/// `data-persistence` when the writer on `node` could not create the token file: FAIL
/// where the volume root belongs to the pod's fsGroup or the kubelet should have made it
/// so, ABORT where the kubelet leaves ownership alone (the restricted writer cannot decide
/// anything then), with the CSIDriver's `fsGroupPolicy` named.
pub(super) async fn unwritable(
    ctx: &CheckContext,
    pv: Option<&PersistentVolume>,
    node: &str,
    log: &str,
) -> Requirement {
    let cannot = format!(
        "pod {WRITER} on node {node} (user {RUN_AS_USER}, fsGroup {RUN_AS_USER}) cannot \
         write to the volume"
    );
    let output = one_line(log);
    let root = parse_root(log);
    if let Some(root) = root.as_ref().filter(|r| i64::from(r.gid) == RUN_AS_USER) {
        return Requirement::fail(
            IDS[4],
            format!("{cannot} although its root belongs to the pod's fsGroup ({root}): {output}"),
        );
    }
    // Whose the root is, when the writer's listing cannot be read, the policy still tells.
    let left_alone = match &root {
        Some(root) => format!(
            "{cannot}: its root directory has {root} and the kubelet did not give it to the \
             pod's fsGroup"
        ),
        None => format!(
            "{cannot} (its root directory could not be listed: {output}), so the kubelet did \
             not give it to the pod's fsGroup"
        ),
    };
    let undecided = "a pod under the restricted Pod Security profile runs as a non-root user \
         without capabilities and cannot write there, so whether data outlives its pod is not \
         tested; this is no finding against the storage: it is decided once volumes of the \
         default class are writable for non-root pods (a CSIDriver with fsGroupPolicy File, or \
         ReadWriteOnceWithFSType and an fsType on the PV, or a driver that creates volume roots \
         writable for every user, e.g. csi-driver-nfs's mountPermissions)";
    let Some((pv, driver)) =
        pv.and_then(|p| Some((p, p.spec.as_ref()?.csi.as_ref()?.driver.clone())))
    else {
        let source = pv.map_or_else(
            || "its PV could not be read".to_string(),
            |p| format!("PV {} has no CSI source", p.name_any()),
        );
        return Requirement::abort(IDS[4], format!("{left_alone} ({source}); {undecided}"));
    };
    let cluster = ctx.cluster();
    let drivers: Api<CSIDriver> = Api::all(cluster.client.clone());
    // Without a CSIDriver object (or without the field) the kubelet uses the default.
    let (policy, source) = match cluster
        .call(
            &format!("read csidriver {driver}"),
            drivers.get_opt(&driver),
        )
        .await
    {
        Ok(Some(d)) => match d.spec.fs_group_policy {
            Some(p) => {
                let source = format!("CSIDriver {driver} declares fsGroupPolicy {p}");
                (p, source)
            }
            None => (
                DEFAULT_POLICY.into(),
                format!(
                    "CSIDriver {driver} declares no fsGroupPolicy, so the default \
                     {DEFAULT_POLICY} applies"
                ),
            ),
        },
        Ok(None) => (
            DEFAULT_POLICY.into(),
            format!(
                "driver {driver} has no CSIDriver object, so the default fsGroupPolicy \
                 {DEFAULT_POLICY} applies"
            ),
        ),
        Err(e) => {
            return Requirement::abort(
                IDS[4],
                format!(
                    "{left_alone}; whether it should have cannot be told without the \
                     CSIDriver's fsGroupPolicy: {e}"
                ),
            );
        }
    };
    let (applies, why) = kubelet_applies_fs_group(&policy, pv);
    let declared = format!("{source}: {why}");
    if applies {
        Requirement::fail(
            IDS[4],
            format!(
                "{left_alone}, although it should have ({declared}; a driver with the \
                 VOLUME_MOUNT_GROUP capability applies it itself): {output}"
            ),
        )
    } else {
        Requirement::abort(IDS[4], format!("{left_alone} ({declared}); {undecided}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, PersistentVolumeSpec};

    fn pv(fs_type: Option<&str>, modes: &[&str]) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                csi: Some(CSIPersistentVolumeSource {
                    driver: "d".into(),
                    volume_handle: "h".into(),
                    fs_type: fs_type.map(String::from),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fs_group_follows_the_csi_driver_policy() {
        let rwo = pv(Some("ext4"), &["ReadWriteOnce"]);
        assert!(!kubelet_applies_fs_group("None", &rwo).0);
        assert!(kubelet_applies_fs_group("File", &pv(None, &["ReadWriteMany"])).0);
        assert!(kubelet_applies_fs_group("ReadWriteOnceWithFSType", &rwo).0);
        assert!(
            kubelet_applies_fs_group(
                "ReadWriteOnceWithFSType",
                &pv(Some("xfs"), &["ReadWriteOncePod"])
            )
            .0
        );
        let (applies, why) =
            kubelet_applies_fs_group("ReadWriteOnceWithFSType", &pv(None, &["ReadWriteOnce"]));
        assert!(!applies);
        assert_eq!(
            why,
            "the kubelet does so only for PVs with an fsType, and PV pv1 has none"
        );
        let (applies, why) = kubelet_applies_fs_group(
            "ReadWriteOnceWithFSType",
            &pv(Some("ext4"), &["ReadWriteMany"]),
        );
        assert!(!applies);
        assert_eq!(
            why,
            "the kubelet does so only for ReadWriteOnce(Pod) PVs, and PV pv1 is ReadWriteMany"
        );
    }

    #[test]
    fn the_volume_root_is_read_from_ls() {
        let log = "sh: can't create /data/scs-kaas-check-token: Permission denied\n\
                   drwxr-xr-x    2 0        0             4096 Nov 29 16:06 /data\n";
        assert_eq!(
            parse_root(log),
            Some(Root {
                mode: "drwxr-xr-x".into(),
                uid: 0,
                gid: 0
            })
        );
        assert_eq!(
            parse_root(log).unwrap().to_string(),
            "uid 0, gid 0, mode drwxr-xr-x"
        );
        assert_eq!(parse_root("cat: /data: Permission denied"), None);
        assert!(writer_script("abc").contains("ls -ldn /data; exit 3"));
    }
}
