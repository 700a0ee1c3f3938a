# bash completion for zcli. Source it, or install it as
# /usr/share/bash-completion/completions/zcli.
# Generated from the API catalogue by `make completions` (python -m zcli.gen
# completions); do not edit. Static: options, commands, resources, verbs, API names.
# Dynamic (parameters, query fields and joins, values, live UUIDs): `zcli __complete`,
# bounded by `timeout` and ZCLI_COMPLETE_BUDGET so that Tab never hangs.

_zcli_options='--columns --continue-on-error --endpoint --file --no-header --no-wait --output --parallel --quiet --session --timeout --version --yes -c -f -o -q -y'
_zcli_commands='account api audit-log backup-storage bs cluster completion disk-offering eip global-config help host image instance-offering ip-range job l2 l2-network l3 l3-network login logout management-node primary-storage ps security-group security-group-rule session sg shell system-tag used-ip user user-tag vip vm vm-ha vm-nic volume volume-snapshot zone'
_zcli_resources='account audit-log backup-storage bs cluster disk-offering eip global-config host image instance-offering ip-range job l2 l2-network l3 l3-network management-node primary-storage ps security-group security-group-rule session sg system-tag used-ip user user-tag vip vm vm-ha vm-nic volume volume-snapshot zone'
_zcli_apis='AddImage AddImageStoreBackupStorage AddIpRange AddIpRangeByNetworkCidr AddKvmHost AddLocalPrimaryStorage AddNfsPrimaryStorage AddSecurityGroupRule AddSharedMountPointPrimaryStorage AddSimulatorBackupStorage AddSimulatorHost AddSimulatorPrimaryStorage AddVmNicToSecurityGroup AttachBackupStorageToZone AttachDataVolumeToVm AttachEip AttachIsoToVmInstance AttachL2NetworkToCluster AttachL3NetworkToVm AttachPrimaryStorageToCluster AttachSecurityGroupToL3Network CancelJob ChangeAccountState ChangeBackupStorageState ChangeClusterState ChangeDiskOfferingState ChangeHostState ChangeImageState ChangeInstanceOffering ChangeInstanceOfferingState ChangeL3NetworkState ChangePrimaryStorageState ChangeSecurityGroupState ChangeVolumeState ChangeZoneState CheckConsistency ClearCrashPoints ClearFlowFaults CreateAccount CreateCluster CreateDataVolume CreateDiskOffering CreateEip CreateInstanceOffering CreateL2NoVlanNetwork CreateL2VlanNetwork CreateL3Network CreateRootVolumeTemplateFromRootVolume CreateSecurityGroup CreateSystemTag CreateUser CreateUserTag CreateVip CreateVmInstance CreateVolumeSnapshot CreateZone DeleteAccount DeleteBackupStorage DeleteCluster DeleteDataVolume DeleteDiskOffering DeleteEip DeleteHost DeleteImage DeleteInstanceOffering DeleteIpRange DeleteL2Network DeleteL3Network DeletePrimaryStorage DeleteSecurityGroup DeleteSecurityGroupRule DeleteTag DeleteUser DeleteVip DeleteVmNicFromSecurityGroup DeleteVolumeSnapshot DeleteZone DestroyVmInstance DetachBackupStorageFromZone DetachDataVolumeFromVm DetachEip DetachIsoFromVmInstance DetachL2NetworkFromCluster DetachL3NetworkFromVm DetachPrimaryStorageFromCluster DetachSecurityGroupFromL3Network ExpungeVmInstance GetApiCatalogue GetFlowChains GetGlobalConfigOptions GetHostMetrics GetJob GetManagementNodeStats GetManagementNodeStatus GetSimulatorHostState GetTaskQueues GetVmMetrics GetVmMigrationCandidateHosts InjectCrash InjectFlowFault LocalStorageMigrateVolume LogInByAccount LogInByUser LogOut MigrateVm OpenVmConsole PauseVmInstance Ping QueryAccount QueryAuditLog QueryBackupStorage QueryCluster QueryDiskOffering QueryEip QueryGlobalConfig QueryHost QueryImage QueryInstanceOffering QueryIpRange QueryJob QueryL2Network QueryL3Network QueryManagementNode QueryPrimaryStorage QuerySecurityGroup QuerySecurityGroupRule QuerySession QuerySystemTag QueryUsedIp QueryUser QueryUserTag QueryVip QueryVmHaStatus QueryVmInstance QueryVmNic QueryVolume QueryVolumeSnapshot QueryZone RebootVmInstance ReconnectHost RecoverVmInstance RequestConsoleAccess ResetGlobalConfig ResizeDataVolume ResizeRootVolume ResumeVmInstance RevertVolumeFromSnapshot SimulatorClearFailures SimulatorInjectFailure StartVmInstance StopVmInstance Subscribe Unsubscribe UpdateAccount UpdateBackupStorage UpdateCluster UpdateDiskOffering UpdateEip UpdateGlobalConfig UpdateHost UpdateImage UpdateInstanceOffering UpdateIpRange UpdateL2Network UpdateL3Network UpdatePrimaryStorage UpdateSecurityGroup UpdateSystemTag UpdateUser UpdateVip UpdateVmInstance UpdateVolume UpdateVolumeSnapshot UpdateZone ValidateSession WaitJob WaitVmInstance'

_zcli_verbs() {
    case "$1" in
        account) echo 'list get change-state create delete update' ;;
        audit-log) echo 'list get' ;;
        backup-storage) echo 'list get add add-image-store attach change-state delete detach update' ;;
        bs) echo 'list get add add-image-store attach change-state delete detach update' ;;
        cluster) echo 'list get change-state create delete update' ;;
        disk-offering) echo 'list get change-state create delete update' ;;
        eip) echo 'list get attach create delete detach update' ;;
        global-config) echo 'list get get-options reset update' ;;
        host) echo 'list get add add-kvm-host add-simulator-host change-state clear-failures delete inject-failure metrics reconnect simulator-state update' ;;
        image) echo 'list get add change-state create-template delete update' ;;
        instance-offering) echo 'list get change-state create delete update' ;;
        ip-range) echo 'list get add add-ip-range add-ip-range-by-network-cidr delete update' ;;
        job) echo 'list get cancel get-job wait' ;;
        l2) echo 'list get attach create create-l2-no-vlan-network create-l2-vlan-network delete detach update' ;;
        l2-network) echo 'list get attach create create-l2-no-vlan-network create-l2-vlan-network delete detach update' ;;
        l3) echo 'list get change-state create delete update' ;;
        l3-network) echo 'list get change-state create delete update' ;;
        management-node) echo 'list get' ;;
        primary-storage) echo 'list get add add-local add-nfs add-shared-mount-point attach change-state delete detach migrate-local-volume update' ;;
        ps) echo 'list get add add-local add-nfs add-shared-mount-point attach change-state delete detach migrate-local-volume update' ;;
        security-group) echo 'list get add-nic add-rule attach change-state create delete delete-rule detach remove-nic update' ;;
        security-group-rule) echo 'list get' ;;
        session) echo 'list get' ;;
        sg) echo 'list get add-nic add-rule attach change-state create delete delete-rule detach remove-nic update' ;;
        system-tag) echo 'list get create update' ;;
        used-ip) echo 'list get' ;;
        user) echo 'list get create delete update' ;;
        user-tag) echo 'list get create' ;;
        vip) echo 'list get create delete update' ;;
        vm) echo 'list get attach-iso attach-l3 change-offering console console-access create destroy detach-iso expunge metrics migrate migration-candidates pause reboot recover resume start stop update wait' ;;
        vm-ha) echo 'list get' ;;
        vm-nic) echo 'list get detach' ;;
        volume) echo 'list get attach change-state create delete detach resize-data resize-root update' ;;
        volume-snapshot) echo 'list get create delete revert update' ;;
        zone) echo 'list get change-state create delete update' ;;
    esac
}

_zcli_run() {
    if command -v timeout >/dev/null 2>&1; then
        timeout 2 "${ZCLI_COMMAND:-zcli}" "$@"
    else
        "${ZCLI_COMMAND:-zcli}" "$@"
    fi
}

# Fill COMPREPLY from a word list (no globbing, no word splitting of the results).
_zcli_words() {
    local list="$1" cur="$2"
    mapfile -t COMPREPLY < <(compgen -W "$list" -- "$cur")
}

_zcli_dynamic() {
    local cur="${!#}" out line nospace=""
    out="$(_zcli_run __complete -- "$@" 2>/dev/null)"
    # bash replaces only the part of the word after its last = or :
    local pre="${cur%"${cur##*[=:]}"}"
    COMPREPLY=()
    while IFS= read -r line; do
        [[ -z "$line" ]] && continue
        line="${line%%$'\t'*}"
        [[ "$line" == *[=.,] ]] && nospace=1
        COMPREPLY+=("${line#"$pre"}")
    done <<< "$out"
    [[ -n "$nospace" ]] && compopt -o nospace 2>/dev/null
    return 0
}

_zcli() {
    local line="${COMP_LINE:0:COMP_POINT}"
    local -a words
    read -r -a words <<< "$line"
    if [[ ${#words[@]} -eq 0 || "$line" =~ [[:space:]]$ ]]; then
        words+=("")
    fi
    local n=$(( ${#words[@]} - 1 )) i=1
    local cur="${words[n]}"
    while (( i < n )); do
        case "${words[i]}" in
            --*=*) ;;
            --columns|--endpoint|--file|--output|--parallel|--session|--timeout|-c|-f|-o) (( i++ )) ;;
            -*) ;;
            *) break ;;
        esac
        (( i++ ))
    done
    COMPREPLY=()
    if (( i >= n )); then
        case "${words[n-1]}" in
            -o|--output) _zcli_words 'table json yaml csv value wide' "$cur"; return 0 ;;
            -f|--file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return 0 ;;
            --columns|--endpoint|--file|--output|--parallel|--session|--timeout|-c|-f|-o) [[ $n -gt 1 ]] && return 0 ;;
        esac
        if [[ "$cur" == -* ]]; then
            _zcli_words "$_zcli_options" "$cur"
        else
            _zcli_words "$_zcli_commands" "$cur"
        fi
        return 0
    fi
    local cmd="${words[i]}"
    if (( n == i + 1 )) && [[ "$cur" != -* ]]; then
        case "$cmd" in
            api) _zcli_words "$_zcli_apis" "$cur"; return 0 ;;
            help) _zcli_words "$_zcli_resources api" "$cur"; return 0 ;;
            login|logout|shell) ;;
            *)
                local verbs
                verbs="$(_zcli_verbs "$cmd")"
                if [[ -n "$verbs" ]]; then
                    _zcli_words "$verbs" "$cur"
                    return 0
                fi
                ;;
        esac
    fi
    if (( n == i + 2 )) && [[ "$cmd" == help ]]; then
        if [[ "${words[i+1]}" == api ]]; then
            _zcli_words "$_zcli_apis" "$cur"
        else
            _zcli_words "$(_zcli_verbs "${words[i+1]}")" "$cur"
        fi
        return 0
    fi
    _zcli_dynamic "${words[@]:1}"
}

complete -F _zcli zcli
